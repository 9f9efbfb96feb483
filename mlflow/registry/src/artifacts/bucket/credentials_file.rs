//! The AWS shared credentials file (`~/.aws/credentials`), which object_store does not read:
//! INI sections named by profile, with `aws_access_key_id`, `aws_secret_access_key` and an
//! optional `aws_session_token`.

use std::path::PathBuf;

use crate::error::StoreError;

/// The keys of one profile. Not `Debug`: a secret must not reach a log by accident.
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// The keys of `AWS_PROFILE` (else `default`) in `AWS_SHARED_CREDENTIALS_FILE` (else
/// `~/.aws/credentials`); `None` when there is no such file or profile. A file that names the
/// profile without both keys is refused, naming the file and the profile (never a value).
pub fn from_environment() -> Result<Option<Keys>, StoreError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let explicit = env("AWS_SHARED_CREDENTIALS_FILE").map(PathBuf::from);
    let Some(file) = explicit
        .clone()
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".aws/credentials")))
    else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(err) if explicit.is_some() => {
            return Err(StoreError::InvalidParameter(format!(
                "cannot read AWS_SHARED_CREDENTIALS_FILE {}: {err}",
                file.display()
            )))
        }
        Err(_) => return Ok(None),
    };
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
    parse(&text, &profile).map_err(|missing| {
        StoreError::InvalidParameter(format!(
            "profile '{profile}' in {} has no {missing}",
            file.display()
        ))
    })
}

/// The keys of `profile` in an INI text; `Err(key)` names a key the profile lacks.
pub fn parse(text: &str, profile: &str) -> Result<Option<Keys>, &'static str> {
    let mut in_profile = false;
    let mut found = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            let section = section.strip_prefix("profile ").unwrap_or(section).trim();
            in_profile = section == profile;
            found |= in_profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().to_owned();
        match key.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => id = Some(value),
            "aws_secret_access_key" => secret = Some(value),
            "aws_session_token" => token = Some(value),
            _ => {}
        }
    }
    if !found {
        return Ok(None);
    }
    Ok(Some(Keys {
        access_key_id: id.ok_or("aws_access_key_id")?,
        secret_access_key: secret.ok_or("aws_secret_access_key")?,
        session_token: token,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_profile_is_read_and_an_incomplete_one_refused() {
        let text = "# keys\n[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key=s1\n\n[ci]\nAWS_ACCESS_KEY_ID = AKIDCI\naws_secret_access_key = s2\naws_session_token = t2\n[broken]\naws_access_key_id = x\n";
        let default = parse(text, "default").unwrap().unwrap();
        assert_eq!(
            (
                default.access_key_id.as_str(),
                default.secret_access_key.as_str()
            ),
            ("AKIDDEFAULT", "s1")
        );
        assert!(default.session_token.is_none());
        let ci = parse(text, "ci").unwrap().unwrap();
        assert_eq!(ci.access_key_id, "AKIDCI");
        assert_eq!(ci.session_token.as_deref(), Some("t2"));
        assert!(parse(text, "absent").unwrap().is_none());
        assert_eq!(parse(text, "broken").err(), Some("aws_secret_access_key"));
    }
}
