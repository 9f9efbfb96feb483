//! Request bodies and query readings that models, versions and aliases share: MLflow sends the
//! same `{name, version?, key?, alias?}` shapes to many endpoints. Reading JSON, required
//! values and MLflow's paging rules are `weir_mlflow_wire::request`'s; what is here is the
//! registry's own: its page sizes, its filter fields, and its page shape.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value};
use weir_mlflow_wire::request::{max_results_param, paging, query_param};
use weir_mlflow_wire::MlflowError;

use crate::filter::Filter;
use crate::store::Tag;

/// A page when `max_results` is not given.
const DEFAULT_PAGE: usize = 100;
/// The largest page a search may ask for.
const MAX_PAGE: usize = 100_000;

#[derive(Deserialize)]
pub(super) struct TagBody {
    key: String,
    #[serde(default)]
    value: String,
}

pub(super) fn tags(tags: Vec<TagBody>) -> Vec<Tag> {
    tags.into_iter()
        .map(|t| Tag {
            key: t.key,
            value: t.value,
        })
        .collect()
}

/// A description change, of a model or (with `version`) of a version.
#[derive(Deserialize)]
pub(super) struct Describe {
    pub(super) name: String,
    #[serde(default)]
    pub(super) version: Option<String>,
    #[serde(default)]
    pub(super) description: String,
}

/// What a delete names: a model, a version, a tag key or an alias.
#[derive(Deserialize)]
pub(super) struct Named {
    pub(super) name: String,
    #[serde(default)]
    pub(super) version: Option<String>,
    #[serde(default)]
    pub(super) key: Option<String>,
    #[serde(default)]
    pub(super) alias: Option<String>,
}

/// A tag set on a model or (with `version`) on a version.
#[derive(Deserialize)]
pub(super) struct SetTag {
    pub(super) name: String,
    #[serde(default)]
    pub(super) version: Option<String>,
    pub(super) key: String,
    #[serde(default)]
    pub(super) value: String,
}

impl SetTag {
    pub(super) fn tag(&self) -> Tag {
        Tag {
            key: self.key.clone(),
            value: self.value.clone(),
        }
    }
}

/// The `name` and `version` a version's GET names in its query.
pub(super) fn name_and_version(
    query: &HashMap<String, String>,
) -> Result<(String, String), MlflowError> {
    Ok((
        query_param(query, "name")?.to_owned(),
        query_param(query, "version")?.to_owned(),
    ))
}

/// `max_results` (1 to 100,000; 100 when absent) and the offset `page_token` of a query.
pub(super) fn search_paging(
    query: &HashMap<String, String>,
) -> Result<(usize, usize), MlflowError> {
    let max_results = max_results_param(query.get("max_results").map(String::as_str))?;
    let page_token = query.get("page_token").map(String::as_str);
    paging(max_results, page_token, DEFAULT_PAGE, MAX_PAGE)
}

/// `max_results` alone, for a list that is not paged further (the audit log).
pub(super) fn page_size(query: &HashMap<String, String>) -> Result<usize, MlflowError> {
    let max_results = max_results_param(query.get("max_results").map(String::as_str))?;
    Ok(paging(max_results, None, DEFAULT_PAGE, MAX_PAGE)?.0)
}

/// A search's filter and paging from its query string.
pub(super) fn search_request(
    query: &HashMap<String, String>,
) -> Result<(Filter, usize, usize), MlflowError> {
    let filter = Filter::parse(query.get("filter").map_or("", String::as_str))?;
    let (max, offset) = search_paging(query)?;
    Ok((filter, max, offset))
}

/// `{key: items, next_page_token?}`: the registry leaves the token out on the last page
/// (tracking writes it as null; the client reads both as "no more").
pub(super) fn page(key: &str, items: Value, next: Option<usize>) -> Value {
    let mut answer = json!({ key: items });
    if let Some(next) = next {
        answer["next_page_token"] = json!(next.to_string());
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn paging_refuses_nonsense() {
        assert_eq!(search_paging(&query(&[])).ok(), Some((100, 0)));
        assert_eq!(
            search_paging(&query(&[("max_results", "5"), ("page_token", "10")])).ok(),
            Some((5, 10))
        );
        assert_eq!(
            search_paging(&query(&[("max_results", "100000")])).ok(),
            Some((100_000, 0))
        );
        for bad in [
            [("max_results", "0")],
            [("max_results", "100001")],
            [("max_results", "-1")],
            [("max_results", "many")],
            [("page_token", "abc")],
        ] {
            let refused = search_paging(&query(&bad)).unwrap_err();
            assert_eq!(refused.code.as_str(), "INVALID_PARAMETER_VALUE", "{bad:?}");
        }
    }

    #[test]
    fn pages_name_the_next_offset_only_when_there_is_one() {
        assert_eq!(
            page("models", json!([1]), Some(3)),
            json!({"models": [1], "next_page_token": "3"})
        );
        assert_eq!(page("models", json!([]), None), json!({"models": []}));
        let refused = search_request(&query(&[("filter", "name > 'a'")])).unwrap_err();
        assert_eq!(refused.code.as_str(), "INVALID_PARAMETER_VALUE");
    }
}
