//! How tracking answers MLflow's search language for runs, experiments and logged models. The
//! text is read by the shared parser ([`weir_mlflow_wire::filter`]: clauses joined by `AND`,
//! each an entity such as `metrics.acc`, `params.lr`, `tags.team`, `attributes.status` or a
//! bare attribute like `run_name`, a comparator and a value; plus `order_by` terms); this module
//! maps the result onto each searched table ([`Schema`]) and into SQL.
//!
//! What weir cannot answer exactly is refused with INVALID_PARAMETER_VALUE naming the problem,
//! never guessed at.

pub use weir_mlflow_wire::filter::{Clause, Comparator, Entity, Filter, Literal, OrderBy};
use weir_sql::Value;

use crate::TrackingError;

/// Whether an attribute compares as text or as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Number,
}

/// How a searched table maps the language onto SQL.
pub struct Schema {
    /// The searched table, as named in the query.
    pub table: &'static str,
    /// Its key column, which the side tables reference.
    pub key: &'static str,
    /// Attribute names (with their aliases) → column and kind.
    pub attributes: &'static [(&'static str, &'static str, Kind)],
    /// Side tables `(key column, key, value)`; `None` where the entity does not exist.
    pub metrics: Option<&'static str>,
    pub params: Option<&'static str>,
    pub tags: Option<&'static str>,
}

fn invalid(message: String) -> TrackingError {
    TrackingError::InvalidParameter(message)
}

/// A comparator in SQL. The filter language spells `=`, `!=`, `<`, `<=`, `>`, `>=`, `LIKE`, `IN`
/// and `NOT IN` as SQL does, so its own text serves; `ILIKE` (which SQLite lacks) is never
/// written this way: [`text_test`] writes it as `LOWER(…) LIKE LOWER(?)`.
fn comparator_sql(comparator: Comparator) -> String {
    comparator.to_string()
}

/// Whether `comparator` compares numbers (metrics and numeric attributes take only these).
fn numeric(comparator: Comparator) -> bool {
    matches!(
        comparator,
        Comparator::Eq
            | Comparator::Ne
            | Comparator::Lt
            | Comparator::Le
            | Comparator::Gt
            | Comparator::Ge
    )
}

impl Schema {
    /// The SQL condition (bare `?` placeholders) for `filter` and its values.
    pub fn condition(&self, filter: &Filter) -> Result<(String, Vec<Value>), TrackingError> {
        let mut conditions = vec!["1 = 1".to_owned()];
        let mut values = Vec::new();
        for clause in &filter.clauses {
            conditions.push(self.clause(clause, &mut values)?);
        }
        Ok((conditions.join(" AND "), values))
    }

    /// A sort expression for `ORDER BY` (missing values last, as MLflow orders them) and its
    /// values.
    pub fn sort(&self, term: &OrderBy) -> Result<(String, Vec<Value>), TrackingError> {
        let Schema { table, key, .. } = self;
        let direction = if term.ascending { "ASC" } else { "DESC" };
        let side = |side_table: Option<&'static str>, name: &String| {
            let side_table =
                side_table.ok_or_else(|| invalid(format!("cannot order by '{name}' here")))?;
            Ok::<_, TrackingError>((
                format!("(SELECT s.value FROM {side_table} s WHERE s.{key} = {table}.{key} AND s.key = ?)"),
                vec![Value::from(name.as_str())],
            ))
        };
        let (expression, values) = match &term.entity {
            Entity::Attribute(name) => {
                let (column, _) = self.attribute(name).ok_or_else(|| {
                    invalid(format!("cannot order by unknown attribute '{name}'"))
                })?;
                (format!("{table}.{column}"), Vec::new())
            }
            Entity::Metric(name) => side(self.metrics, name)?,
            Entity::Param(name) => side(self.params, name)?,
            Entity::Tag(name) => side(self.tags, name)?,
        };
        // The expression appears twice (null test, then value), so its values do too.
        let mut doubled = values.clone();
        doubled.extend(values);
        Ok((
            format!("CASE WHEN {expression} IS NULL THEN 1 ELSE 0 END, {expression} {direction}"),
            doubled,
        ))
    }

    /// The column and kind of the attribute `name` (any case, aliases included).
    fn attribute(&self, name: &str) -> Option<(&'static str, Kind)> {
        self.attributes
            .iter()
            .find(|(a, _, _)| a.eq_ignore_ascii_case(name))
            .map(|(_, column, kind)| (*column, *kind))
    }

    fn clause(&self, clause: &Clause, values: &mut Vec<Value>) -> Result<String, TrackingError> {
        let Schema { table, key, .. } = self;
        let side = |kind: &str, side_table: Option<&'static str>| {
            side_table.ok_or_else(|| invalid(format!("{kind} cannot be searched here")))
        };
        match &clause.entity {
            Entity::Metric(name) => {
                let metrics = side("metrics", self.metrics)?;
                let (Literal::Number(number), true) = (&clause.value, numeric(clause.comparator))
                else {
                    return Err(invalid(format!(
                        "metric '{name}' compares to a number with =, !=, <, <=, > or >="
                    )));
                };
                values.extend([Value::from(name.as_str()), Value::Real(*number)]);
                Ok(format!(
                    "EXISTS (SELECT 1 FROM {metrics} s WHERE s.{key} = {table}.{key} AND s.key = ? AND s.is_nan = 0 AND s.value {} ?)",
                    comparator_sql(clause.comparator)
                ))
            }
            Entity::Param(name) | Entity::Tag(name) => {
                let (kind, side_table) = match &clause.entity {
                    Entity::Param(_) => ("params", self.params),
                    _ => ("tags", self.tags),
                };
                let side_table = side(kind, side_table)?;
                values.push(Value::from(name.as_str()));
                let test = text_test(clause, "s.value", kind, values)?;
                Ok(format!(
                    "EXISTS (SELECT 1 FROM {side_table} s WHERE s.{key} = {table}.{key} AND s.key = ? AND {test})"
                ))
            }
            Entity::Attribute(name) => {
                let (column, kind) = self.attribute(name).ok_or_else(|| {
                    let known: Vec<&str> = self.attributes.iter().map(|a| a.0).collect();
                    invalid(format!(
                        "unknown attribute '{name}'; searchable attributes are {}",
                        known.join(", ")
                    ))
                })?;
                let column = format!("{table}.{column}");
                match kind {
                    Kind::Text => text_test(clause, &column, name, values),
                    Kind::Number => match (&clause.value, numeric(clause.comparator)) {
                        (Literal::Number(number), true) => {
                            values.push(Value::Int(*number as i64));
                            Ok(format!("{column} {} ?", comparator_sql(clause.comparator)))
                        }
                        _ => Err(invalid(format!(
                            "attribute '{name}' compares to a number with =, !=, <, <=, > or >="
                        ))),
                    },
                }
            }
        }
    }
}

/// A text comparison of `subject`: =, !=, LIKE, ILIKE, IN, NOT IN.
fn text_test(
    clause: &Clause,
    subject: &str,
    name: &str,
    values: &mut Vec<Value>,
) -> Result<String, TrackingError> {
    let sql = comparator_sql(clause.comparator);
    match (&clause.value, clause.comparator) {
        (Literal::List(items), Comparator::In | Comparator::NotIn) => {
            if items.is_empty() {
                return Err(invalid(format!("'{name}' IN needs at least one value")));
            }
            values.extend(items.iter().map(|i| Value::from(i.as_str())));
            let marks = vec!["?"; items.len()].join(", ");
            Ok(format!("{subject} {sql} ({marks})"))
        }
        (Literal::Text(text), Comparator::Eq | Comparator::Ne | Comparator::Like) => {
            values.push(Value::from(text.as_str()));
            Ok(format!("{subject} {sql} ?"))
        }
        (Literal::Text(text), Comparator::ILike) => {
            values.push(Value::from(text.as_str()));
            Ok(format!("LOWER({subject}) LIKE LOWER(?)"))
        }
        _ => Err(invalid(format!(
            "'{name}' compares to a quoted string with =, !=, LIKE or ILIKE, or to a list with IN"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORDS: Schema = Schema {
        table: "records",
        key: "id",
        attributes: &[
            ("name", "name", Kind::Text),
            ("created", "created_ms", Kind::Number),
        ],
        metrics: Some("record_metrics"),
        params: None,
        tags: Some("record_tags"),
    };

    fn condition(filter: &str) -> Result<(String, Vec<Value>), TrackingError> {
        RECORDS.condition(&Filter::parse(filter)?)
    }

    #[test]
    fn clauses_become_sql_with_their_values_bound() {
        let (sql, values) = condition(
            "NAME ILIKE 'a%' and created >= 5 and metrics.acc > 0.5 and tags.`a b` NOT IN ('x', 'y')",
        )
        .unwrap();
        assert_eq!(
            sql,
            "1 = 1 AND LOWER(records.name) LIKE LOWER(?) AND records.created_ms >= ? \
             AND EXISTS (SELECT 1 FROM record_metrics s WHERE s.id = records.id AND s.key = ? AND s.is_nan = 0 AND s.value > ?) \
             AND EXISTS (SELECT 1 FROM record_tags s WHERE s.id = records.id AND s.key = ? AND s.value NOT IN (?, ?))"
        );
        assert_eq!(
            values,
            [
                Value::from("a%"),
                Value::Int(5),
                Value::from("acc"),
                Value::Real(0.5),
                Value::from("a b"),
                Value::from("x"),
                Value::from("y"),
            ]
        );
        assert_eq!(condition("").unwrap(), ("1 = 1".to_owned(), Vec::new()));
    }

    #[test]
    fn what_a_table_cannot_answer_is_refused_by_name() {
        for (bad, message) in [
            (
                "colour = 'red'",
                "unknown attribute 'colour'; searchable attributes are name, created",
            ),
            ("params.lr = '1'", "params cannot be searched here"),
            (
                "metrics.acc LIKE '1%'",
                "metric 'acc' compares to a number with =, !=, <, <=, > or >=",
            ),
            (
                "created = 'yesterday'",
                "attribute 'created' compares to a number with =, !=, <, <=, > or >=",
            ),
            (
                "name > 3",
                "'name' compares to a quoted string with =, !=, LIKE or ILIKE, or to a list with IN",
            ),
            (
                "name = 'a' or name = 'b'",
                "invalid filter at position 12: expected AND between clauses (OR is not supported), found 'or'",
            ),
        ] {
            assert_eq!(
                condition(bad),
                Err(TrackingError::InvalidParameter(message.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn order_terms_sort_missing_values_last() {
        let sort = |term: &str| RECORDS.sort(&OrderBy::parse(term).unwrap());
        assert_eq!(
            sort("created DESC").unwrap(),
            (
                "CASE WHEN records.created_ms IS NULL THEN 1 ELSE 0 END, records.created_ms DESC"
                    .to_owned(),
                Vec::new()
            )
        );
        let (sql, values) = sort("metrics.acc").unwrap();
        assert!(sql.ends_with("AND s.key = ?) ASC"), "{sql}");
        assert_eq!(values, [Value::from("acc"), Value::from("acc")]);
        assert_eq!(
            sort("params.lr"),
            Err(TrackingError::InvalidParameter(
                "cannot order by 'lr' here".into()
            ))
        );
        assert_eq!(
            sort("colour"),
            Err(TrackingError::InvalidParameter(
                "cannot order by unknown attribute 'colour'".into()
            ))
        );
    }
}
