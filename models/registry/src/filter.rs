//! MLflow's search filter language, the subset the registry answers: clauses joined by `AND`,
//! each `name`, `run_id` (versions) or `tag.<key>` / `tags.<key>` compared with `=`, `!=`,
//! `LIKE` or `ILIKE` to a quoted string. The official client appends
//! ``tag.`mlflow.prompt.is_prompt` != 'true'`` to every model search, so tag clauses matter.
//! Anything else is refused with INVALID_PARAMETER_VALUE rather than misread.

use crate::store::StoreError;

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
        let clauses = split_and(text)
            .into_iter()
            .filter(|c| !c.trim().is_empty())
            .map(|c| parse_clause(c.trim()).ok_or_else(|| unsupported(text)))
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

fn unsupported(text: &str) -> StoreError {
    StoreError::InvalidParameter(format!(
        "unsupported filter '{text}': weir answers clauses joined by AND on name, run_id or tag.<key> with =, !=, LIKE or ILIKE and a quoted value"
    ))
}

/// Splits on `AND` outside quotes and backticks.
fn split_and(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quote: Option<char> = None;
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < text.len() {
        let c = bytes[index] as char;
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' || c == '`' => quote = Some(c),
            None => {
                let rest = &text[index..];
                let at_word = index == 0 || bytes[index - 1].is_ascii_whitespace();
                if at_word
                    && rest.len() > 4
                    && rest[..3].eq_ignore_ascii_case("and")
                    && bytes[index + 3].is_ascii_whitespace()
                {
                    parts.push(&text[start..index]);
                    start = index + 3;
                    index += 3;
                    continue;
                }
            }
        }
        index += 1;
    }
    parts.push(&text[start..]);
    parts
}

fn unquote(text: &str) -> Option<&str> {
    ['\'', '"', '`'].iter().find_map(|&q| {
        text.strip_prefix(q)?
            .strip_suffix(q)
            .filter(|inner| !inner.contains(q))
    })
}

fn parse_clause(clause: &str) -> Option<Clause> {
    let (left, operator, right) = [("!=", Operator::NotEqual), ("=", Operator::Equal)]
        .iter()
        .find_map(|(token, op)| clause.split_once(token).map(|(l, r)| (l, *op, r)))
        .or_else(|| {
            [(" ILIKE ", Operator::ILike), (" LIKE ", Operator::Like)]
                .iter()
                .find_map(|(token, op)| {
                    let at = clause.to_ascii_uppercase().find(token)?;
                    Some((&clause[..at], *op, &clause[at + token.len()..]))
                })
        })?;
    let left = left.trim();
    let field = match left {
        "name" => Field::Name,
        "run_id" => Field::RunId,
        _ => {
            let key = left
                .strip_prefix("tags.")
                .or_else(|| left.strip_prefix("tag."))?;
            Field::Tag(unquote(key).unwrap_or(key).to_owned())
        }
    };
    let value = unquote(right.trim())?;
    Some(Clause {
        field,
        operator,
        value: value.to_owned(),
    })
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
        ] {
            assert!(
                matches!(Filter::parse(bad), Err(StoreError::InvalidParameter(_))),
                "{bad}"
            );
        }
    }
}
