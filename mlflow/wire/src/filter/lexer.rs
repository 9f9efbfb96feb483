//! Splits a filter into tokens, one character at a time. Positions are 1-based character
//! counts, so an error points where a person counts, whatever the encoding.
//!
//! Nothing is refused here but an unterminated string: a character that fits no token becomes
//! [`Kind::Stray`], and the parser refuses it where it knows what it expected instead.

use super::{shown, word_char, Comparator, FilterError, Subject};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    /// Letters, digits and `_ . - + / :`: a key, a keyword or a number.
    Word(String),
    /// Text between two identical quotes (`'`, `"` or a backtick), the quotes removed.
    Quoted {
        quote: char,
        text: String,
    },
    Operator(Comparator),
    Open,
    Close,
    Comma,
    Stray(char),
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub kind: Kind,
    /// The first character's position.
    pub start: usize,
    /// The position just past the last character: the next token is adjacent when it starts
    /// here (as the backticked key of ``tags.`my key` `` must be).
    pub end: usize,
}

impl Token {
    /// The token as an error message shows what was found.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Word(word) => format!("'{}'", shown(word)),
            Kind::Quoted { quote, text } => format!("the string {quote}{}{quote}", shown(text)),
            Kind::Operator(comparator) => format!("'{comparator}'"),
            Kind::Open => "'('".to_owned(),
            Kind::Close => "')'".to_owned(),
            Kind::Comma => "','".to_owned(),
            Kind::Stray(c) => format!("'{}'", c.escape_debug()),
            Kind::End => "the end".to_owned(),
        }
    }
}

/// The tokens of `chars`, followed by one [`Kind::End`].
pub(super) fn tokens(chars: &[char], subject: Subject) -> Result<Vec<Token>, FilterError> {
    let mut tokens = Vec::new();
    let mut at = 0;
    while let Some(&c) = chars.get(at) {
        let start = at;
        at += 1;
        let kind = match c {
            c if c.is_whitespace() => continue,
            '\'' | '"' | '`' => {
                let length = chars[at..].iter().position(|&q| q == c).ok_or_else(|| {
                    FilterError::new(
                        subject,
                        start + 1,
                        format!("a closing {c} for the string that opens here"),
                        "the end",
                    )
                })?;
                let text = chars[at..at + length].iter().collect();
                at += length + 1;
                Kind::Quoted { quote: c, text }
            }
            '(' => Kind::Open,
            ')' => Kind::Close,
            ',' => Kind::Comma,
            '=' => Kind::Operator(Comparator::Eq),
            '!' | '<' | '>' => {
                let equals = chars.get(at) == Some(&'=');
                if equals {
                    at += 1;
                }
                match (c, equals) {
                    ('!', true) => Kind::Operator(Comparator::Ne),
                    ('<', true) => Kind::Operator(Comparator::Le),
                    ('<', false) => Kind::Operator(Comparator::Lt),
                    ('>', true) => Kind::Operator(Comparator::Ge),
                    ('>', false) => Kind::Operator(Comparator::Gt),
                    _ => Kind::Stray(c),
                }
            }
            c if word_char(c) => {
                let length = chars[at..]
                    .iter()
                    .position(|&w| !word_char(w))
                    .unwrap_or(chars.len() - at);
                let word = chars[start..at + length].iter().collect();
                at += length;
                Kind::Word(word)
            }
            other => Kind::Stray(other),
        };
        tokens.push(Token {
            kind,
            start: start + 1,
            end: at + 1,
        });
    }
    tokens.push(Token {
        kind: Kind::End,
        start: chars.len() + 1,
        end: chars.len() + 1,
    });
    Ok(tokens)
}
