//! MLflow's search language for runs, experiments and logged models: clauses joined by `AND`,
//! each an entity (`metrics.acc`, `params.lr`, `tags.team`, `attributes.status` or a bare
//! attribute such as `run_name`), a comparator and a value; plus `order_by` terms.
//!
//! Keys with spaces or dots are written in backticks or double quotes (``metrics.`f1 score` ``).
//! What weir cannot answer exactly is refused with INVALID_PARAMETER_VALUE naming the problem,
//! never guessed at.

use weir_sql::Value;

use crate::TrackingError;

#[derive(Debug, Clone, PartialEq)]
pub enum Entity {
    Metric(String),
    Param(String),
    Tag(String),
    Attribute(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    ILike,
    In,
    NotIn,
}

impl Comparator {
    fn sql(self) -> &'static str {
        match self {
            Comparator::Eq => "=",
            Comparator::Ne => "!=",
            Comparator::Lt => "<",
            Comparator::Le => "<=",
            Comparator::Gt => ">",
            Comparator::Ge => ">=",
            Comparator::Like | Comparator::ILike => "LIKE",
            Comparator::In => "IN",
            Comparator::NotIn => "NOT IN",
        }
    }

    fn numeric(self) -> bool {
        matches!(
            self,
            Comparator::Eq
                | Comparator::Ne
                | Comparator::Lt
                | Comparator::Le
                | Comparator::Gt
                | Comparator::Ge
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Text(String),
    Number(f64),
    List(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub entity: Entity,
    pub comparator: Comparator,
    pub value: Literal,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    pub clauses: Vec<Clause>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub entity: Entity,
    pub ascending: bool,
}

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

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, TrackingError> {
        let mut cursor = Cursor::new(text);
        let mut clauses = Vec::new();
        cursor.skip_space();
        if cursor.done() {
            return Ok(Filter::default());
        }
        loop {
            clauses.push(cursor.clause()?);
            cursor.skip_space();
            if cursor.done() {
                break;
            }
            let word = cursor.word();
            if !word.eq_ignore_ascii_case("and") {
                return Err(invalid(format!(
                    "invalid filter '{text}': expected AND between clauses, found '{word}' (OR is not supported)"
                )));
            }
        }
        Ok(Filter { clauses })
    }

    /// The SQL condition (bare `?` placeholders) and its values.
    pub fn to_sql(&self, schema: &Schema) -> Result<(String, Vec<Value>), TrackingError> {
        let mut conditions = vec!["1 = 1".to_owned()];
        let mut values = Vec::new();
        for clause in &self.clauses {
            conditions.push(clause.to_sql(schema, &mut values)?);
        }
        Ok((conditions.join(" AND "), values))
    }
}

impl Clause {
    fn to_sql(&self, schema: &Schema, values: &mut Vec<Value>) -> Result<String, TrackingError> {
        let Schema { table, key, .. } = schema;
        let side = |kind: &str, side_table: Option<&'static str>| {
            side_table.ok_or_else(|| invalid(format!("{kind} cannot be searched here")))
        };
        match &self.entity {
            Entity::Metric(name) => {
                let metrics = side("metrics", schema.metrics)?;
                let (Literal::Number(number), true) = (&self.value, self.comparator.numeric())
                else {
                    return Err(invalid(format!(
                        "metric '{name}' compares to a number with =, !=, <, <=, > or >="
                    )));
                };
                values.extend([Value::from(name.as_str()), Value::Real(*number)]);
                Ok(format!(
                    "EXISTS (SELECT 1 FROM {metrics} s WHERE s.{key} = {table}.{key} AND s.key = ? AND s.is_nan = 0 AND s.value {} ?)",
                    self.comparator.sql()
                ))
            }
            Entity::Param(name) | Entity::Tag(name) => {
                let (kind, side_table) = match &self.entity {
                    Entity::Param(_) => ("params", schema.params),
                    _ => ("tags", schema.tags),
                };
                let side_table = side(kind, side_table)?;
                values.push(Value::from(name.as_str()));
                let test = self.text_test("s.value", kind, values)?;
                Ok(format!(
                    "EXISTS (SELECT 1 FROM {side_table} s WHERE s.{key} = {table}.{key} AND s.key = ? AND {test})"
                ))
            }
            Entity::Attribute(name) => {
                let (column, kind) = schema
                    .attributes
                    .iter()
                    .find(|(a, _, _)| a.eq_ignore_ascii_case(name))
                    .map(|(_, column, kind)| (*column, *kind))
                    .ok_or_else(|| {
                        let known: Vec<&str> = schema.attributes.iter().map(|a| a.0).collect();
                        invalid(format!(
                            "unknown attribute '{name}'; searchable attributes are {}",
                            known.join(", ")
                        ))
                    })?;
                let column = format!("{table}.{column}");
                match kind {
                    Kind::Text => self.text_test(&column, name, values),
                    Kind::Number => match (&self.value, self.comparator.numeric()) {
                        (Literal::Number(number), true) => {
                            values.push(Value::Int(*number as i64));
                            Ok(format!("{column} {} ?", self.comparator.sql()))
                        }
                        _ => Err(invalid(format!(
                            "attribute '{name}' compares to a number with =, !=, <, <=, > or >="
                        ))),
                    },
                }
            }
        }
    }

    /// A text comparison of `subject`: =, !=, LIKE, ILIKE, IN, NOT IN.
    fn text_test(
        &self,
        subject: &str,
        name: &str,
        values: &mut Vec<Value>,
    ) -> Result<String, TrackingError> {
        match (&self.value, self.comparator) {
            (Literal::List(items), Comparator::In | Comparator::NotIn) => {
                if items.is_empty() {
                    return Err(invalid(format!("'{name}' IN needs at least one value")));
                }
                values.extend(items.iter().map(|i| Value::from(i.as_str())));
                let marks = vec!["?"; items.len()].join(", ");
                Ok(format!("{subject} {} ({marks})", self.comparator.sql()))
            }
            (Literal::Text(text), Comparator::Eq | Comparator::Ne | Comparator::Like) => {
                values.push(Value::from(text.as_str()));
                Ok(format!("{subject} {} ?", self.comparator.sql()))
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
}

impl OrderBy {
    pub fn parse(text: &str) -> Result<OrderBy, TrackingError> {
        let mut cursor = Cursor::new(text);
        cursor.skip_space();
        let entity = cursor.entity()?;
        cursor.skip_space();
        let direction = cursor.word();
        cursor.skip_space();
        let ascending = match direction.to_ascii_uppercase().as_str() {
            "" | "ASC" => true,
            "DESC" => false,
            other => {
                return Err(invalid(format!(
                    "invalid order_by '{text}': expected ASC or DESC, found '{other}'"
                )))
            }
        };
        if !cursor.done() {
            return Err(invalid(format!("invalid order_by '{text}'")));
        }
        Ok(OrderBy { entity, ascending })
    }

    /// A sort expression for `ORDER BY` (missing values last, as MLflow orders them) and its
    /// values.
    pub fn to_sql(&self, schema: &Schema) -> Result<(String, Vec<Value>), TrackingError> {
        let Schema { table, key, .. } = schema;
        let direction = if self.ascending { "ASC" } else { "DESC" };
        let (expression, values) = match &self.entity {
            Entity::Attribute(name) => {
                let column = schema
                    .attributes
                    .iter()
                    .find(|(a, _, _)| a.eq_ignore_ascii_case(name))
                    .map(|(_, column, _)| *column)
                    .ok_or_else(|| {
                        invalid(format!("cannot order by unknown attribute '{name}'"))
                    })?;
                (format!("{table}.{column}"), Vec::new())
            }
            entity => {
                let (side_table, name) = match entity {
                    Entity::Metric(name) => (schema.metrics, name),
                    Entity::Param(name) => (schema.params, name),
                    Entity::Tag(name) => (schema.tags, name),
                    Entity::Attribute(_) => unreachable!("handled above"),
                };
                let side_table =
                    side_table.ok_or_else(|| invalid(format!("cannot order by '{name}' here")))?;
                (
                    format!("(SELECT s.value FROM {side_table} s WHERE s.{key} = {table}.{key} AND s.key = ?)"),
                    vec![Value::from(name.as_str())],
                )
            }
        };
        // The expression appears twice (null test, then value), so its values do too.
        let mut doubled = values.clone();
        doubled.extend(values);
        Ok((
            format!("CASE WHEN {expression} IS NULL THEN 1 ELSE 0 END, {expression} {direction}"),
            doubled,
        ))
    }
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor { text, at: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn done(&self) -> bool {
        self.rest().is_empty()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.text.len() - trimmed.len();
    }

    fn error(&self, expected: &str) -> TrackingError {
        invalid(format!(
            "invalid filter '{}': expected {expected} at position {}",
            self.text, self.at
        ))
    }

    /// Letters, digits and `_ . - + / :` (what unquoted keys and attribute names are made of).
    fn word(&mut self) -> &'a str {
        let rest = self.rest();
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || "_.-+/:".contains(c)))
            .unwrap_or(rest.len());
        self.at += end;
        &rest[..end]
    }

    fn quoted(&mut self) -> Result<String, TrackingError> {
        let quote = self.peek().ok_or_else(|| self.error("a quote"))?;
        let rest = &self.rest()[1..];
        let end = rest
            .find(quote)
            .ok_or_else(|| self.error(&format!("a closing {quote}")))?;
        self.at += end + 2;
        Ok(rest[..end].to_owned())
    }

    fn entity(&mut self) -> Result<Entity, TrackingError> {
        let word = self.word();
        let (prefix, key) = match word.split_once('.') {
            Some((prefix, key)) => (prefix, key.to_owned()),
            None => ("", word.to_owned()),
        };
        // `metrics.` followed by a quoted key.
        let key = if key.is_empty() && matches!(self.peek(), Some('`' | '"')) {
            self.quoted()?
        } else {
            key
        };
        if word.is_empty() && matches!(self.peek(), Some('`' | '"')) {
            return Ok(Entity::Attribute(self.quoted()?));
        }
        let entity = match prefix.to_ascii_lowercase().as_str() {
            "" => Entity::Attribute(key),
            "metric" | "metrics" => Entity::Metric(key),
            "param" | "params" | "parameter" | "parameters" => Entity::Param(key),
            "tag" | "tags" => Entity::Tag(key),
            "attribute" | "attributes" | "attr" | "run" => Entity::Attribute(key),
            other => {
                return Err(invalid(format!(
                    "invalid filter '{}': unknown entity type '{other}' (use metrics., params., tags. or attributes.)",
                    self.text
                )))
            }
        };
        match &entity {
            Entity::Metric(k) | Entity::Param(k) | Entity::Tag(k) | Entity::Attribute(k)
                if k.is_empty() =>
            {
                Err(self.error("a key name"))
            }
            _ => Ok(entity),
        }
    }

    fn comparator(&mut self) -> Result<Comparator, TrackingError> {
        for (token, comparator) in [
            ("!=", Comparator::Ne),
            ("<=", Comparator::Le),
            (">=", Comparator::Ge),
            ("=", Comparator::Eq),
            ("<", Comparator::Lt),
            (">", Comparator::Gt),
        ] {
            if self.rest().starts_with(token) {
                self.at += token.len();
                return Ok(comparator);
            }
        }
        let word = self.word().to_ascii_uppercase();
        match word.as_str() {
            "LIKE" => Ok(Comparator::Like),
            "ILIKE" => Ok(Comparator::ILike),
            "IN" => Ok(Comparator::In),
            "NOT" => {
                self.skip_space();
                if self.word().eq_ignore_ascii_case("in") {
                    Ok(Comparator::NotIn)
                } else {
                    Err(self.error("IN after NOT"))
                }
            }
            _ => Err(self.error("a comparator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN)")),
        }
    }

    fn literal(&mut self) -> Result<Literal, TrackingError> {
        match self.peek() {
            Some('\'' | '"') => Ok(Literal::Text(self.quoted()?)),
            Some('(') => {
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_space();
                    items.push(self.quoted()?);
                    self.skip_space();
                    match self.peek() {
                        Some(',') => self.at += 1,
                        Some(')') => {
                            self.at += 1;
                            return Ok(Literal::List(items));
                        }
                        _ => return Err(self.error("',' or ')' in a list")),
                    }
                }
            }
            _ => {
                let word = self.word();
                word.parse::<f64>()
                    .map(Literal::Number)
                    .map_err(|_| self.error("a number or a quoted string"))
            }
        }
    }

    fn clause(&mut self) -> Result<Clause, TrackingError> {
        self.skip_space();
        let entity = self.entity()?;
        self.skip_space();
        let comparator = self.comparator()?;
        self.skip_space();
        let value = self.literal()?;
        Ok(Clause {
            entity,
            comparator,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_run_filters_parse() {
        let filter = Filter::parse(
            "metrics.acc > 0.9 and params.lr = '0.01' AND tags.`mlflow.user` LIKE 'al%' and attributes.status = 'FINISHED' and run_id IN ('a', 'b') and metrics.\"f1 score\" <= -1e-3",
        )
        .unwrap();
        assert_eq!(filter.clauses.len(), 6);
        assert_eq!(filter.clauses[0].entity, Entity::Metric("acc".into()));
        assert_eq!(filter.clauses[0].value, Literal::Number(0.9));
        assert_eq!(filter.clauses[2].entity, Entity::Tag("mlflow.user".into()));
        assert_eq!(
            filter.clauses[4].value,
            Literal::List(vec!["a".into(), "b".into()])
        );
        assert_eq!(filter.clauses[5].entity, Entity::Metric("f1 score".into()));
        assert!(Filter::parse("  ").unwrap().clauses.is_empty());
    }

    #[test]
    fn bad_filters_name_the_problem() {
        for (bad, expected) in [
            ("metrics.acc >", "a number or a quoted string"),
            ("metrics.acc > 0.9 or params.x = 'y'", "OR is not supported"),
            ("params.lr = 'unterminated", "closing '"),
            ("foo.bar = 'x'", "unknown entity type 'foo'"),
            ("metrics.acc ~ 3", "a comparator"),
            ("metrics. = 3", "a key name"),
        ] {
            let err = Filter::parse(bad).unwrap_err().to_string();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }

    #[test]
    fn order_by_terms() {
        assert_eq!(
            OrderBy::parse("metrics.acc DESC").unwrap(),
            OrderBy {
                entity: Entity::Metric("acc".into()),
                ascending: false
            }
        );
        assert!(OrderBy::parse("start_time").unwrap().ascending);
        assert!(OrderBy::parse("start_time sideways").is_err());
    }
}
