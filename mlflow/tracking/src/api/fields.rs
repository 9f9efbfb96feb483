//! The request fields tracking reads beyond wire's common ones: protobuf's doubles, optional
//! int64s, tags and params as key/value lists, view types, run ids, filters and order terms.

use serde::Deserialize;
use serde_json::Value;
use weir_mlflow_wire::request::{int, paging, required};
use weir_mlflow_wire::MlflowError;

use crate::filter::{Filter, OrderBy};
use crate::store::{KeyValue, ViewType};

/// A double as protobuf's JSON writes it, including "NaN", "Infinity" and "-Infinity".
pub(super) fn double(value: &Value, name: &str) -> Result<f64, MlflowError> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            other => other.trim().parse().ok(),
        },
        _ => None,
    }
    .ok_or_else(|| MlflowError::invalid(format!("'{name}' must be a number, got {value}")))
}

/// An int64 that may be absent (or null).
pub(super) fn optional_int(value: &Option<Value>, name: &str) -> Result<Option<i64>, MlflowError> {
    value
        .as_ref()
        .filter(|v| !v.is_null())
        .map(|v| int(v, name))
        .transpose()
}

/// A search's page: `max_results` (an int64, 1 to 50,000, `default` when absent) and
/// `page_token`, as wire's [`paging`] reads them.
pub(super) fn search_page(
    max_results: &Option<Value>,
    page_token: Option<&str>,
    default: usize,
) -> Result<(usize, usize), MlflowError> {
    paging(
        optional_int(max_results, "max_results")?,
        page_token,
        default,
        50_000,
    )
}

/// A search's filter text; absent is the empty filter.
pub(super) fn search_filter(text: Option<&str>) -> Result<Filter, MlflowError> {
    Ok(Filter::parse(text.unwrap_or(""))?)
}

pub(super) fn order_terms(order_by: &[String]) -> Result<Vec<OrderBy>, MlflowError> {
    Ok(order_by
        .iter()
        .map(|o| OrderBy::parse(o))
        .collect::<Result<_, _>>()?)
}

/// A view type as the client sends it: the enum's name, or its number.
pub(super) fn view_type(value: &Option<Value>) -> Result<ViewType, MlflowError> {
    Ok(match value {
        None | Some(Value::Null) => ViewType::ActiveOnly,
        Some(Value::String(s)) => ViewType::parse(s)?,
        Some(other) => ViewType::parse(&other.to_string())?,
    })
}

#[derive(Deserialize)]
pub(super) struct KeyValueBody {
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

/// Tags or params of a request; `what` names the list in a refusal (`tags.key`).
pub(super) fn key_values(
    entries: Vec<KeyValueBody>,
    what: &str,
) -> Result<Vec<KeyValue>, MlflowError> {
    entries
        .into_iter()
        .map(|e| {
            Ok(KeyValue::new(
                required(e.key, &format!("{what}.key"))?,
                e.value.unwrap_or_default(),
            ))
        })
        .collect()
}

/// The run a request names: `run_id`, or `run_uuid` from older clients.
pub(super) fn run_id(
    run_id: Option<String>,
    run_uuid: Option<String>,
) -> Result<String, MlflowError> {
    required(run_id.filter(|r| !r.is_empty()).or(run_uuid), "run_id")
}

/// A param or tag value: the client sends strings, but a bare number is read as its text.
pub(super) fn text_value(value: Option<Value>) -> String {
    match value {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn doubles_read_protobufs_non_finite_strings() {
        assert!(double(&json!("NaN"), "v").unwrap().is_nan());
        assert_eq!(double(&json!("-Infinity"), "v"), Ok(f64::NEG_INFINITY));
        assert_eq!(double(&json!("0.5"), "v"), Ok(0.5));
        assert_eq!(double(&json!(2), "v"), Ok(2.0));
        let refused = double(&json!("high"), "acc").unwrap_err();
        assert_eq!(refused.message, "'acc' must be a number, got \"high\"");
        assert!(double(&json!(null), "acc").is_err());
    }

    #[test]
    fn optional_fields_and_run_ids() {
        assert_eq!(optional_int(&None, "step"), Ok(None));
        assert_eq!(optional_int(&Some(Value::Null), "step"), Ok(None));
        assert_eq!(optional_int(&Some(json!("3")), "step"), Ok(Some(3)));
        assert!(optional_int(&Some(json!("x")), "step").is_err());
        assert_eq!(
            run_id(Some(String::new()), Some("u".into())),
            Ok("u".into())
        );
        let missing = run_id(None, None).unwrap_err();
        assert!(missing.message.contains("'run_id'"), "{missing}");
        assert_eq!(text_value(Some(json!(1.5))), "1.5");
        assert_eq!(text_value(None), "");
        assert_eq!(view_type(&Some(json!(3))), Ok(ViewType::All));
        assert!(view_type(&Some(json!("SOME"))).is_err());
    }
}
