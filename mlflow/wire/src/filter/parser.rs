//! The grammar over [`lexer`](super::lexer)'s tokens. No recursion (nothing nests), so no
//! input is deep enough to exhaust the stack.

use super::lexer::{tokens, Kind, Token};
use super::{
    Clause, Comparator, Entity, FilterError, Literal, OrderBy, Subject, MAX_CLAUSES, MAX_LENGTH,
};

const A_KEY: &str = "a key such as name, params.<key>, metrics.<key> or tags.<key>";

pub(super) struct Parser {
    tokens: Vec<Token>,
    at: usize,
    subject: Subject,
}

impl Parser {
    pub fn new(text: &str, subject: Subject) -> Result<Parser, FilterError> {
        let length = text.chars().count();
        if length > MAX_LENGTH {
            return Err(FilterError::new(
                subject,
                MAX_LENGTH + 1,
                format!("at most {MAX_LENGTH} characters"),
                format!("{length} characters"),
            ));
        }
        let chars: Vec<char> = text.chars().collect();
        Ok(Parser {
            tokens: tokens(&chars, subject)?,
            at: 0,
            subject,
        })
    }

    /// The next token; the last one ([`Kind::End`]) repeats for ever.
    fn peek(&self) -> Token {
        self.tokens
            .get(self.at)
            .or_else(|| self.tokens.last())
            .cloned()
            .unwrap_or(Token {
                kind: Kind::End,
                start: 1,
                end: 1,
            })
    }

    fn next(&mut self) -> Token {
        let token = self.peek();
        self.at = (self.at + 1).min(self.tokens.len());
        token
    }

    fn error(&self, token: &Token, expected: impl Into<String>) -> FilterError {
        FilterError::new(self.subject, token.start, expected, token.describe())
    }

    pub fn filter(&mut self) -> Result<Vec<Clause>, FilterError> {
        let mut clauses = Vec::new();
        if self.peek().kind == Kind::End {
            return Ok(clauses);
        }
        loop {
            if clauses.len() == MAX_CLAUSES {
                let token = self.peek();
                return Err(self.error(
                    &token,
                    format!("the end: a filter holds at most {MAX_CLAUSES} clauses"),
                ));
            }
            clauses.push(self.clause()?);
            let token = self.next();
            match &token.kind {
                Kind::End => return Ok(clauses),
                Kind::Word(word) if word.eq_ignore_ascii_case("and") => {}
                Kind::Word(word) if word.eq_ignore_ascii_case("or") => {
                    return Err(self.error(&token, "AND between clauses (OR is not supported)"))
                }
                _ => return Err(self.error(&token, "AND between clauses or the end")),
            }
        }
    }

    pub fn order_by(&mut self) -> Result<OrderBy, FilterError> {
        let entity = self.entity()?;
        let token = self.next();
        let ascending = match &token.kind {
            Kind::End => {
                return Ok(OrderBy {
                    entity,
                    ascending: true,
                })
            }
            Kind::Word(word) if word.eq_ignore_ascii_case("asc") => true,
            Kind::Word(word) if word.eq_ignore_ascii_case("desc") => false,
            _ => return Err(self.error(&token, "ASC or DESC")),
        };
        let token = self.next();
        if token.kind != Kind::End {
            return Err(self.error(&token, "the end after ASC or DESC"));
        }
        Ok(OrderBy { entity, ascending })
    }

    fn clause(&mut self) -> Result<Clause, FilterError> {
        let position = self.peek().start;
        let entity = self.entity()?;
        let comparator = self.comparator()?;
        let value = self.literal()?;
        Ok(Clause {
            entity,
            comparator,
            value,
            position,
        })
    }

    fn entity(&mut self) -> Result<Entity, FilterError> {
        let token = self.next();
        match &token.kind {
            Kind::Word(word) => {
                let (prefix, key) = word.split_once('.').unwrap_or(("", word));
                let make: fn(String) -> Entity = match prefix.to_ascii_lowercase().as_str() {
                    "" | "attribute" | "attributes" | "attr" | "run" => Entity::Attribute,
                    "metric" | "metrics" => Entity::Metric,
                    "param" | "params" | "parameter" | "parameters" => Entity::Param,
                    "tag" | "tags" => Entity::Tag,
                    other => {
                        return Err(FilterError::new(
                            self.subject,
                            token.start,
                            "metrics., params., tags. or attributes. before a key",
                            format!("unknown entity type '{}'", super::shown(other)),
                        ))
                    }
                };
                if !key.is_empty() {
                    return Ok(make(key.to_owned()));
                }
                // `tags.` then a quoted key, written right after the dot.
                let quoted = self.peek();
                match &quoted.kind {
                    Kind::Quoted { text, .. } if quoted.start == token.end && !text.is_empty() => {
                        self.next();
                        Ok(make(text.clone()))
                    }
                    _ => Err(self.error(
                        &quoted,
                        format!("a key name after '{}'", super::shown(word)),
                    )),
                }
            }
            Kind::Quoted {
                quote: '`' | '"',
                text,
            } if !text.is_empty() => Ok(Entity::Attribute(text.clone())),
            Kind::Quoted { .. } => Err(self.error(&token, "a key name")),
            Kind::Open => {
                Err(self.error(&token, format!("{A_KEY} (parentheses are not supported)")))
            }
            _ => Err(self.error(&token, A_KEY)),
        }
    }

    fn comparator(&mut self) -> Result<Comparator, FilterError> {
        let token = self.next();
        match &token.kind {
            Kind::Operator(comparator) => Ok(*comparator),
            Kind::Word(word) if word.eq_ignore_ascii_case("like") => Ok(Comparator::Like),
            Kind::Word(word) if word.eq_ignore_ascii_case("ilike") => Ok(Comparator::ILike),
            Kind::Word(word) if word.eq_ignore_ascii_case("in") => Ok(Comparator::In),
            Kind::Word(word) if word.eq_ignore_ascii_case("not") => {
                let token = self.next();
                match &token.kind {
                    Kind::Word(word) if word.eq_ignore_ascii_case("in") => Ok(Comparator::NotIn),
                    _ => Err(self.error(&token, "IN after NOT")),
                }
            }
            _ => Err(self.error(
                &token,
                "a comparator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN or NOT IN)",
            )),
        }
    }

    fn literal(&mut self) -> Result<Literal, FilterError> {
        let token = self.next();
        match &token.kind {
            Kind::Quoted {
                quote: '\'' | '"',
                text,
            } => Ok(Literal::Text(text.clone())),
            Kind::Word(word) => word
                .parse::<f64>()
                .map(Literal::Number)
                .map_err(|_| self.error(&token, "a number or a quoted string")),
            Kind::Open => self.list(),
            _ => Err(self.error(&token, "a number or a quoted string")),
        }
    }

    /// The rest of `( 'a', 'b' )`, its `(` read.
    fn list(&mut self) -> Result<Literal, FilterError> {
        let mut items = Vec::new();
        loop {
            let token = self.next();
            match &token.kind {
                Kind::Quoted {
                    quote: '\'' | '"',
                    text,
                } => items.push(text.clone()),
                _ => return Err(self.error(&token, "a quoted string in the list")),
            }
            let token = self.next();
            match &token.kind {
                Kind::Comma => {}
                Kind::Close => return Ok(Literal::List(items)),
                _ => return Err(self.error(&token, "',' or ')' in a list")),
            }
        }
    }
}
