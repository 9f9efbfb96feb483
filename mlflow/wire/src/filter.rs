//! MLflow's search language, parsed once for every weir server that answers it (the registry's
//! model and version searches, tracking's run, experiment and logged-model searches): a filter
//! is clauses joined by `AND`, each a key, a comparator and a value; an `order_by` term is a key
//! and an optional `ASC`/`DESC`.
//!
//! Keys are `name`-like attributes (optionally `attributes.`/`attribute.`/`attr.`/`run.`), or
//! `metrics.`/`params.`/`tags.` (singular too) followed by a dotted word or a key in backticks,
//! double or single quotes (``tags.`my key` ``). Comparators are `=`, `!=`, `<`, `<=`, `>`, `>=`,
//! `LIKE`, `ILIKE`, `IN` and `NOT IN`; values are strings in single or double quotes (no
//! escapes: a value holding one quote is written in the other), numbers, or `IN` lists of
//! strings. Keywords are case-insensitive. `OR` and parentheses are refused, never guessed at.
//!
//! The text is read as characters, never sliced at byte offsets, so no input can split a
//! multi-byte character and panic the server: a filter is something any caller can send. Every
//! refusal names a 1-based character position, what was expected there and what was found.
//! What a server can answer (which attributes, which comparators per key) is its own business,
//! decided on the [`Filter`] this returns.

mod lexer;
mod parser;

use std::fmt;

/// The longest filter or order_by term read, in characters: far beyond what a person or the
/// official client writes, and short enough that no request turns into a huge SQL statement.
pub const MAX_LENGTH: usize = 8192;

/// The most clauses a filter may hold. Each becomes a SQL subquery joined by `AND`; SQLite
/// refuses an expression deeper than 1000 and that would surface as an internal error.
pub const MAX_CLAUSES: usize = 100;

/// What a key refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    Metric(String),
    Param(String),
    Tag(String),
    /// A column of the searched record (`name`, `status`, `start_time`, …), with or without an
    /// `attributes.` prefix.
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
    /// Where the clause starts (1-based, in characters), so a server refusing it can say where.
    pub position: usize,
}

/// A parsed filter: every clause must hold. Empty (or blank) text is the empty filter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    pub clauses: Vec<Clause>,
}

/// One `order_by` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    pub entity: Entity,
    pub ascending: bool,
}

/// What was being read when it went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Filter,
    OrderBy,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Subject::Filter => "filter",
            Subject::OrderBy => "order_by",
        })
    }
}

/// A filter or order_by term that cannot be read, or that a server cannot answer. Servers
/// answer it as MLflow's INVALID_PARAMETER_VALUE (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {subject} at position {position}: expected {expected}, found {found}")]
pub struct FilterError {
    subject: Subject,
    position: usize,
    expected: String,
    found: String,
}

impl FilterError {
    /// A refusal of a well-formed filter, for servers that cannot answer some clause:
    /// `position` is the clause's, `found` describes what it holds (see [`Entity`]'s and
    /// [`Literal`]'s `Display`).
    pub fn unsupported(
        position: usize,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> FilterError {
        FilterError::new(Subject::Filter, position, expected, found)
    }

    fn new(
        subject: Subject,
        position: usize,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> FilterError {
        FilterError {
            subject,
            position,
            expected: expected.into(),
            found: found.into(),
        }
    }

    /// The 1-based character position the error is about.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let clauses = parser::Parser::new(text, Subject::Filter)?.filter()?;
        Ok(Filter { clauses })
    }
}

impl OrderBy {
    /// Reads a term such as `metrics.acc DESC` or `attributes.start_time` (ascending).
    pub fn parse(text: &str) -> Result<OrderBy, FilterError> {
        parser::Parser::new(text, Subject::OrderBy)?.order_by()
    }
}

/// Whether `c` may appear in an unquoted key or number.
fn word_char(c: char) -> bool {
    c.is_alphanumeric() || "_.-+/:".contains(c)
}

/// Text for an error message: escaped (no control character reaches a log raw) and cut short
/// (a 10 kB value is not echoed back whole).
fn shown(text: &str) -> String {
    const LONGEST: usize = 40;
    let escaped: String = text.chars().flat_map(char::escape_debug).collect();
    if escaped.chars().count() > LONGEST {
        format!("{}…", escaped.chars().take(LONGEST).collect::<String>())
    } else {
        escaped
    }
}

impl fmt::Display for Entity {
    /// The key as a filter spells it, quoting what is not a plain word.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (prefix, key) = match self {
            Entity::Metric(key) => ("metrics.", key),
            Entity::Param(key) => ("params.", key),
            Entity::Tag(key) => ("tags.", key),
            Entity::Attribute(key) => ("", key),
        };
        if !key.is_empty() && key.chars().all(word_char) {
            write!(f, "{prefix}{}", shown(key))
        } else {
            write!(f, "{prefix}`{}`", shown(key))
        }
    }
}

impl fmt::Display for Comparator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Comparator::Eq => "=",
            Comparator::Ne => "!=",
            Comparator::Lt => "<",
            Comparator::Le => "<=",
            Comparator::Gt => ">",
            Comparator::Ge => ">=",
            Comparator::Like => "LIKE",
            Comparator::ILike => "ILIKE",
            Comparator::In => "IN",
            Comparator::NotIn => "NOT IN",
        })
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Text(text) => write!(f, "the string '{}'", shown(text)),
            Literal::Number(number) => write!(f, "the number {number}"),
            Literal::List(items) => write!(f, "a list of {} strings", items.len()),
        }
    }
}

/// What every MLflow search endpoint must refuse, shared by the registry's and tracking's HTTP
/// tests so the two servers are held to one standard.
#[doc(hidden)]
pub mod conformance {
    /// Filters refused whatever entities a server knows: multi-byte characters where a key or
    /// value belongs, unterminated strings, operators MLflow lacks, `OR`, parentheses, a NUL.
    pub const MALFORMED: &[&str] = &[
        "é",
        "params.x IN (é)",
        "name = 'unterminated",
        "name ==",
        "😀",
        "name = '😀' AND 😀",
        "`",
        "name = 'a'\0",
        "name = 'a' OR name = 'b'",
        "(name = 'a')",
    ];

    /// Why `answer` (the JSON body of a search given `filter`) is not MLflow's refusal of a
    /// filter that names where it went wrong without echoing it whole; `None` when it is.
    pub fn refusal_problem(filter: &str, answer: &serde_json::Value) -> Option<String> {
        if answer["error_code"] != "INVALID_PARAMETER_VALUE" {
            return Some(format!("{filter:?}: not INVALID_PARAMETER_VALUE: {answer}"));
        }
        let message = answer["message"].as_str().unwrap_or_default();
        if !message.starts_with("invalid filter at position ") {
            return Some(format!("{filter:?}: no position in {message:?}"));
        }
        (message.len() >= 300).then(|| format!("the filter is echoed whole: {message}"))
    }
}

#[cfg(test)]
mod tests;
