//! Aliases: named pointers at versions; a protected one may point only at an approved version.

use weir_sql::{params, Sql};

use super::approvals::approval_status;
use super::models::require_model;
use super::versions::{parse_version, read_model_version};
use super::{ModelVersion, Store, StoreError};

impl Store {
    /// refusal says what approval is missing.
    pub fn set_alias(
        &self,
        actor: &str,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<(), StoreError> {
        let number = parse_version(version)?;
        if alias.is_empty() || alias.parse::<u64>().is_ok() || alias.eq_ignore_ascii_case("latest")
        {
            return Err(StoreError::InvalidParameter(format!(
                "alias '{alias}' is reserved or empty; aliases cannot be numbers or 'latest'"
            )));
        }
        let protected = self.is_protected(alias);
        self.write(actor, "set_alias", name, version, |db| {
            read_model_version(db, name, number)?;
            if protected {
                let status = approval_status(db, name, number)?;
                if !status.approved {
                    return Err(StoreError::PermissionDenied(format!(
                        "alias '{alias}' is protected and version {version} of '{name}' is not approved: {}",
                        status.explain()
                    )));
                }
            }
            let before = alias_version(db, name, alias)?;
            db.execute(
                "INSERT INTO registered_model_aliases (name, alias, version) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
                params![name, alias, number],
            )?;
            Ok(((), format!("{alias}={}", before.map(|v| v.to_string()).unwrap_or_default()), format!("{alias}={number}")))
        })
    }

    pub fn get_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<ModelVersion, StoreError> {
        self.read(|db| {
            require_model(db, name)?;
            let version = alias_version(db, name, alias)?.ok_or_else(|| {
                StoreError::InvalidParameter(format!("Registered model alias {alias} not found."))
            })?;
            read_model_version(db, name, version)
        })
    }

    pub fn delete_alias(&self, actor: &str, name: &str, alias: &str) -> Result<(), StoreError> {
        self.write(actor, "delete_alias", name, "", |db| {
            require_model(db, name)?;
            let before = alias_version(db, name, alias)?;
            db.execute(
                "DELETE FROM registered_model_aliases WHERE name = ?1 AND alias = ?2",
                params![name, alias],
            )?;
            Ok((
                (),
                format!(
                    "{alias}={}",
                    before.map(|v| v.to_string()).unwrap_or_default()
                ),
                String::new(),
            ))
        })
    }
}

fn alias_version(db: &mut dyn Sql, name: &str, alias: &str) -> Result<Option<i64>, StoreError> {
    Ok(db.query_value(
        "SELECT version FROM registered_model_aliases WHERE name = ?1 AND alias = ?2",
        params![name, alias],
    )?)
}
