//! The part of MLflow's search filter language the registry answers, read by the shared parser
//! ([`weir_mlflow_wire::filter`]): clauses joined by `AND`, each `name`, `run_id` (versions) or
//! `tag.<key>` / `tags.<key>` compared with `=`, `!=`, `LIKE` or `ILIKE` to a quoted string. The
//! official client appends ``tag.`mlflow.prompt.is_prompt` != 'true'`` to every model search,
//! so tag clauses matter. Anything else is refused with INVALID_PARAMETER_VALUE rather than
//! misread.

use weir_mlflow_wire::filter::{self as wire, Comparator, Entity, FilterError, Literal};

use crate::error::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Name,
    RunId,
    Tag(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equal,
    NotEqual,
    Like,
    ILike,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    pub field: Field,
    pub operator: Operator,
    pub value: String,
}

/// A parsed filter: every clause must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    pub clauses: Vec<Clause>,
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, StoreError> {
        let clauses = wire::Filter::parse(text)?
            .clauses
            .into_iter()
            .map(Clause::answerable)
            .collect::<Result<_, _>>()?;
        Ok(Filter { clauses })
    }

    /// The SQL condition (with `?` placeholders) and its values. `table` is the searched table's
    /// name, `tags` its tag table and `key_columns` how a tag row joins it.
    pub fn to_sql(&self, table: &str, tags: &str, key_columns: &[&str]) -> (String, Vec<String>) {
        let mut conditions = vec!["1 = 1".to_owned()];
        let mut values = Vec::new();
        for clause in &self.clauses {
            let like = matches!(clause.operator, Operator::Like | Operator::ILike);
            let fold = |sql: String| {
                if clause.operator == Operator::ILike {
                    format!("LOWER({sql})")
                } else {
                    sql
                }
            };
            let escape = if like { " ESCAPE '\\'" } else { "" };
            let needle = fold("?".to_owned());
            match &clause.field {
                Field::Name | Field::RunId => {
                    let column = if clause.field == Field::Name {
                        "name"
                    } else {
                        "run_id"
                    };
                    let operator = match clause.operator {
                        Operator::Equal => "=",
                        Operator::NotEqual => "!=",
                        Operator::Like | Operator::ILike => "LIKE",
                    };
                    let subject = fold(format!("{table}.{column}"));
                    conditions.push(format!("{subject} {operator} {needle}{escape}"));
                    values.push(clause.value.clone());
                }
                Field::Tag(key) => {
                    let join: Vec<String> = key_columns
                        .iter()
                        .map(|c| format!("t.{c} = {table}.{c}"))
                        .collect();
                    // `!=` keeps rows without the tag, as MLflow does.
                    let (exists, operator) = match clause.operator {
                        Operator::NotEqual => ("NOT EXISTS", "="),
                        Operator::Equal => ("EXISTS", "="),
                        Operator::Like | Operator::ILike => ("EXISTS", "LIKE"),
                    };
                    let subject = fold("t.value".to_owned());
                    conditions.push(format!(
                        "{exists} (SELECT 1 FROM {tags} t WHERE {} AND t.key = ? AND {subject} {operator} {needle}{escape})",
                        join.join(" AND "),
                    ));
                    values.push(key.clone());
                    values.push(clause.value.clone());
                }
            }
        }
        (conditions.join(" AND "), values)
    }
}

impl Clause {
    /// The registry's reading of a parsed clause, or why it cannot answer it.
    fn answerable(clause: wire::Clause) -> Result<Clause, FilterError> {
        let refuse = |expected: &str, found: String| {
            FilterError::unsupported(clause.position, expected, found)
        };
        let field = match &clause.entity {
            Entity::Attribute(name) if name == "name" => Field::Name,
            Entity::Attribute(name) if name == "run_id" => Field::RunId,
            Entity::Tag(key) => Field::Tag(key.clone()),
            other => {
                return Err(refuse(
                    "name, run_id or tags.<key> (what the registry searches)",
                    format!("'{other}'"),
                ))
            }
        };
        let operator = match clause.comparator {
            Comparator::Eq => Operator::Equal,
            Comparator::Ne => Operator::NotEqual,
            Comparator::Like => Operator::Like,
            Comparator::ILike => Operator::ILike,
            other => {
                return Err(refuse(
                    &format!("=, !=, LIKE or ILIKE after {}", clause.entity),
                    format!("'{other}'"),
                ))
            }
        };
        let value = match &clause.value {
            Literal::Text(value) => value.clone(),
            other => {
                return Err(refuse(
                    &format!("a quoted string to compare {} with", clause.entity),
                    other.to_string(),
                ))
            }
        };
        Ok(Clause {
            field,
            operator,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_own_prompt_clause_parses() {
        let filter =
            Filter::parse("name LIKE 'search_%' AND tag.`mlflow.prompt.is_prompt` != 'true'")
                .unwrap();
        assert_eq!(
            filter.clauses,
            [
                Clause {
                    field: Field::Name,
                    operator: Operator::Like,
                    value: "search_%".into()
                },
                Clause {
                    field: Field::Tag("mlflow.prompt.is_prompt".into()),
                    operator: Operator::NotEqual,
                    value: "true".into()
                },
            ]
        );
    }

    #[test]
    fn quoted_values_may_contain_and() {
        let filter = Filter::parse("name = 'salt and pepper' and run_id = \"r1\"").unwrap();
        assert_eq!(filter.clauses[0].value, "salt and pepper");
        assert_eq!(filter.clauses[1].field, Field::RunId);
        assert!(Filter::parse("").unwrap().clauses.is_empty());
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "name > 'a'",
            "name = 'a' OR name = 'b'",
            "creation_timestamp = '1'",
            "name = unquoted",
            "name LIKE",
            "é",
            "name IN ('é')",
            "params.x = '1'",
            "name = 1",
        ] {
            assert!(
                matches!(Filter::parse(bad), Err(StoreError::InvalidParameter(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn refusals_say_where_and_what_the_registry_answers() {
        for (bad, message) in [
            (
                "name = 'a' AND creation_timestamp = '1'",
                "invalid filter at position 16: expected name, run_id or tags.<key> (what the registry searches), found 'creation_timestamp'",
            ),
            (
                "metrics.`f1 score` = '1'",
                "invalid filter at position 1: expected name, run_id or tags.<key> (what the registry searches), found 'metrics.`f1 score`'",
            ),
            (
                "name > 'a'",
                "invalid filter at position 1: expected =, !=, LIKE or ILIKE after name, found '>'",
            ),
            (
                "tags.k = 3",
                "invalid filter at position 1: expected a quoted string to compare tags.k with, found the number 3",
            ),
            (
                "é",
                "invalid filter at position 2: expected a comparator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN or NOT IN), found the end",
            ),
        ] {
            assert_eq!(
                Filter::parse(bad),
                Err(StoreError::InvalidParameter(message.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn operators_and_quotes_inside_values_are_values() {
        for (filter, field, operator, value) in [
            ("name LIKE 'a=b%'", Field::Name, Operator::Like, "a=b%"),
            (
                "tags.note = 'x != y'",
                Field::Tag("note".into()),
                Operator::Equal,
                "x != y",
            ),
            (
                "tags.\"odd key\" ILIKE 'é%'",
                Field::Tag("odd key".into()),
                Operator::ILike,
                "é%",
            ),
            (
                "run_id != \"it's\"",
                Field::RunId,
                Operator::NotEqual,
                "it's",
            ),
        ] {
            assert_eq!(
                Filter::parse(filter).unwrap().clauses,
                [Clause {
                    field,
                    operator,
                    value: value.into()
                }],
                "{filter}"
            );
        }
    }
}
