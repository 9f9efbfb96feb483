//! The values that cross the SQL boundary, and their conversions to and from each driver.
//!
//! Four kinds are enough for weir's tables (integers, floats, text, null) and keep the two
//! dialects honest: PostgreSQL's driver checks every parameter's type against the statement, so
//! the conversion below picks the wire type from what the server asked for.

use std::error::Error;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type};
use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::SqlError;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Int(value)
    }
}

impl From<i32> for Value {
    fn from(value: i32) -> Self {
        Value::Int(value.into())
    }
}

impl From<u32> for Value {
    fn from(value: u32) -> Self {
        Value::Int(value.into())
    }
}

impl From<usize> for Value {
    fn from(value: usize) -> Self {
        Value::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Int(value.into())
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Value::Real(value)
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(value.to_owned())
    }
}

impl From<&String> for Value {
    fn from(value: &String) -> Self {
        Value::Text(value.clone())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Text(value)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

/// One result row, its columns in the statement's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// The column at `index`, converted; a mismatch names the column and both types.
    pub fn get<T: FromValue>(&self, index: usize) -> Result<T, SqlError> {
        let value = self.0.get(index).ok_or_else(|| {
            SqlError::Type(format!(
                "column {index} requested from a row of {}",
                self.0.len()
            ))
        })?;
        T::from_value(value).ok_or_else(|| {
            SqlError::Type(format!(
                "column {index} holds {value:?}, not {}",
                std::any::type_name::<T>()
            ))
        })
    }
}

pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }
}

impl FromValue for u32 {
    fn from_value(value: &Value) -> Option<Self> {
        i64::from_value(value).and_then(|v| u32::try_from(v).ok())
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Option<Self> {
        i64::from_value(value).map(|v| v != 0)
    }
}

impl FromValue for f64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Real(v) => Some(*v),
            Value::Int(v) => Some(*v as f64),
            _ => None,
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Text(v) => Some(v.clone()),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Real(v) => ValueRef::Real(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
        }))
    }
}

pub(crate) fn from_sqlite(value: ValueRef<'_>) -> Result<Value, SqlError> {
    Ok(match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::Int(v),
        ValueRef::Real(v) => Value::Real(v),
        ValueRef::Text(v) => Value::Text(String::from_utf8_lossy(v).into_owned()),
        ValueRef::Blob(_) => {
            return Err(SqlError::Type(
                "blob columns are not part of weir's schema".to_owned(),
            ))
        }
    })
}

pub(crate) fn from_postgres(row: &postgres::Row) -> Result<Row, SqlError> {
    let mut values = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(index)?.into()
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(index)?.into()
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(index)?.map(i32::from).into()
        } else if *ty == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(index)?.into()
        } else if *ty == Type::FLOAT4 {
            row.try_get::<_, Option<f32>>(index)?.map(f64::from).into()
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(index)?.into()
        } else if [Type::TEXT, Type::VARCHAR, Type::NAME, Type::BPCHAR].contains(ty) {
            row.try_get::<_, Option<String>>(index)?.into()
        } else {
            return Err(SqlError::Type(format!(
                "column '{}' has PostgreSQL type {ty}, which weir does not read",
                column.name()
            )));
        };
        values.push(value);
    }
    Ok(Row(values))
}

type BoxError = Box<dyn Error + Sync + Send>;

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => {
                if *ty == Type::INT8 {
                    v.to_sql(ty, out)
                } else if *ty == Type::INT4 {
                    i32::try_from(*v)?.to_sql(ty, out)
                } else if *ty == Type::INT2 {
                    i16::try_from(*v)?.to_sql(ty, out)
                } else if *ty == Type::FLOAT8 {
                    (*v as f64).to_sql(ty, out)
                } else if *ty == Type::BOOL {
                    (*v != 0).to_sql(ty, out)
                } else {
                    Err(format!("an integer cannot be sent as {ty}").into())
                }
            }
            Value::Real(v) => {
                if *ty == Type::FLOAT4 {
                    (*v as f32).to_sql(ty, out)
                } else {
                    v.to_sql(ty, out)
                }
            }
            Value::Text(v) => v.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_convert_and_name_mismatches() {
        let row = Row(vec![
            Value::Int(7),
            Value::Text("a".into()),
            Value::Null,
            Value::Real(0.5),
        ]);
        assert_eq!(row.get::<i64>(0).unwrap(), 7);
        assert_eq!(row.get::<f64>(0).unwrap(), 7.0);
        assert_eq!(row.get::<String>(1).unwrap(), "a");
        assert_eq!(row.get::<Option<String>>(2).unwrap(), None);
        assert_eq!(row.get::<f64>(3).unwrap(), 0.5);
        let err = row.get::<i64>(1).unwrap_err().to_string();
        assert!(err.contains("column 1"), "{err}");
        assert!(row.get::<i64>(9).is_err());
        assert!(row.get::<u32>(0).is_ok());
        assert!(Row(vec![Value::Int(-1)]).get::<u32>(0).is_err());
    }

    #[test]
    fn options_become_null() {
        assert_eq!(Value::from(None::<&str>), Value::Null);
        assert_eq!(Value::from(Some(3_i64)), Value::Int(3));
    }
}
