//! MLflow's limits on what one request may log, checked before any of it is written.

use super::{invalid, KeyValue, Metric};
use crate::TrackingError;

/// MLflow's limits on one `log-batch` call.
pub const MAX_BATCH_METRICS: usize = 1000;
pub const MAX_BATCH_PARAMS: usize = 100;
pub const MAX_BATCH_TAGS: usize = 100;
pub const MAX_BATCH_ENTRIES: usize = 1000;
const MAX_KEY_LENGTH: usize = 250;
const MAX_PARAM_VALUE_LENGTH: usize = 6000;
const MAX_TAG_VALUE_LENGTH: usize = 8000;

/// MLflow's key rules: not empty, at most 250 characters, no leading `/` and no `..` segment.
fn check_key(kind: &str, key: &str) -> Result<(), TrackingError> {
    let valid = !key.is_empty()
        && key.len() <= MAX_KEY_LENGTH
        && !key.starts_with('/')
        && !key.split('/').any(|part| part == "..")
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || "_-. /:".contains(c));
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "Invalid {kind} name: '{key}'. Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colons (:) and slashes (/), be at most {MAX_KEY_LENGTH} characters and not start with '/' or contain '..'"
        )))
    }
}

pub(super) fn check_tag(tag: &KeyValue) -> Result<(), TrackingError> {
    check_key("tag", &tag.key)?;
    if tag.value.len() > MAX_TAG_VALUE_LENGTH {
        return Err(invalid(format!(
            "tag '{}' has a value of {} characters; the limit is {MAX_TAG_VALUE_LENGTH}",
            tag.key,
            tag.value.len()
        )));
    }
    Ok(())
}

pub(super) fn check_batch(
    metrics: &[Metric],
    params: &[KeyValue],
    tags: &[KeyValue],
) -> Result<(), TrackingError> {
    let total = metrics.len() + params.len() + tags.len();
    if metrics.len() > MAX_BATCH_METRICS
        || params.len() > MAX_BATCH_PARAMS
        || tags.len() > MAX_BATCH_TAGS
        || total > MAX_BATCH_ENTRIES
    {
        return Err(invalid(format!(
            "A batch logging request can contain at most {MAX_BATCH_METRICS} metrics, {MAX_BATCH_PARAMS} params, {MAX_BATCH_TAGS} tags and {MAX_BATCH_ENTRIES} entries in total; got {} metrics, {} params, {} tags",
            metrics.len(),
            params.len(),
            tags.len()
        )));
    }
    for metric in metrics {
        check_key("metric", &metric.key)?;
    }
    for param in params {
        check_key("param", &param.key)?;
        if param.value.len() > MAX_PARAM_VALUE_LENGTH {
            return Err(invalid(format!(
                "param '{}' has a value of {} characters; the limit is {MAX_PARAM_VALUE_LENGTH}",
                param.key,
                param.value.len()
            )));
        }
    }
    for tag in tags {
        check_tag(tag)?;
    }
    Ok(())
}
