//! `weir models …`: the registry from the command line.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;
use weir_http::HttpClient;
use weir_mlflow_client::{Identity, RegistryClient};

use crate::output::{table, text, Output};

#[derive(clap::Args)]
pub struct ModelsArgs {
    #[command(flatten)]
    registry: RegistryAddress,
    #[command(flatten)]
    client: ClientArgs,
    /// How to print answers.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Upload a version folder (model.onnx, or safetensors files) and register it.
    Register {
        name: String,
        path: PathBuf,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Ask for a version to be reviewed.
    RequestApproval {
        name: String,
        version: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Approve a version (not your own).
    Approve {
        name: String,
        version: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Reject a version.
    Reject {
        name: String,
        version: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Point an alias at a version (protected aliases need an approved version).
    Alias {
        name: String,
        alias: String,
        version: String,
    },
    /// Registered models.
    List,
    /// One model's versions with their approval state.
    Show { name: String },
    /// The audit log, newest first.
    Audit {
        name: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

fn approval_line(status: &Value) -> String {
    format!(
        "version {} of '{}': {} ({} of {} approvals{}{})",
        text(&status["version"]),
        text(&status["name"]),
        if status["approved"] == Value::Bool(true) {
            "approved"
        } else {
            "not approved"
        },
        status["approved_by"].as_array().map_or(0, Vec::len),
        text(&status["required_approvals"]),
        status["approved_by"]
            .as_array()
            .filter(|a| !a.is_empty())
            .map_or(String::new(), |_| format!(
                ", by {}",
                text(&status["approved_by"])
            )),
        status["rejected_by"]
            .as_array()
            .filter(|a| !a.is_empty())
            .map_or(String::new(), |_| format!(
                "; rejected by {}",
                text(&status["rejected_by"])
            )),
    )
}

/// Who a client command (models, runs, train) is, and which servers it trusts.
#[derive(clap::Args)]
pub struct ClientArgs {
    /// Who you are, for servers without tokens (recorded as creator, approver, in the audit log).
    #[arg(long = "as", env = "WEIR_USER", global = true)]
    acting_as: Option<String>,
    /// A bearer token, for servers started with --tokens (--token-file keeps it out of `ps`).
    #[arg(
        long,
        env = "WEIR_TOKEN",
        hide_env_values = true,
        global = true,
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// A file holding the bearer token (surrounding whitespace is ignored).
    #[arg(long, env = "WEIR_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// A PEM bundle of the CA(s) to trust for https:// servers, instead of the system's.
    #[arg(long, env = "WEIR_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
}

impl ClientArgs {
    /// A token (from --token or --token-file) when given, else `--as`, else the login name.
    pub fn identity(&self) -> anyhow::Result<Identity> {
        Ok(self.given_identity()?.unwrap_or_else(|| {
            Identity::User(std::env::var("USER").unwrap_or_else(|_| "anonymous".to_owned()))
        }))
    }

    /// A token (from --token or --token-file) when given, else `--as`, else nothing.
    pub fn given_identity(&self) -> anyhow::Result<Option<Identity>> {
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => Some(token.trim().to_owned()),
            (None, Some(file)) => Some(read_token_file(file)?),
            (None, None) => None,
        };
        Ok(match (token, &self.acting_as) {
            (Some(token), _) => {
                anyhow::ensure!(!token.is_empty(), "--token is empty");
                Some(Identity::Token(token))
            }
            (None, Some(user)) => Some(Identity::User(user.clone())),
            (None, None) => None,
        })
    }

    /// The HTTP client, trusting --ca-file when given.
    pub fn http(&self) -> anyhow::Result<HttpClient> {
        Ok(HttpClient::with_ca_file(self.ca_file.as_deref())?)
    }
}

/// Where `weir models`, `weir runs` and `weir train` find the registry (which also serves
/// tracking): one option for all three, so a registry named once reaches every command.
pub const DEFAULT_REGISTRY: &str = "http://127.0.0.1:5000";

/// The registry address option shared by the client commands.
#[derive(clap::Args)]
pub struct RegistryAddress {
    /// The registry and tracking server (`weir registry`, or MLflow's). Precedence: this flag,
    /// then WEIR_REGISTRY, then WEIR_TRACKING_URI (older name), then MLFLOW_TRACKING_URI (as
    /// the mlflow client reads it), then http://127.0.0.1:5000 (`weir train` tracks nothing
    /// unless one is given).
    #[arg(
        long = "registry",
        visible_alias = "tracking-uri",
        env = "WEIR_REGISTRY",
        value_name = "URL",
        global = true
    )]
    registry: Option<String>,
}

impl RegistryAddress {
    /// The address given by the flag or the environment, if any.
    pub fn given(&self) -> Option<String> {
        let non_empty = |v: String| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        self.registry
            .clone()
            .and_then(non_empty)
            .or_else(|| std::env::var("WEIR_TRACKING_URI").ok().and_then(non_empty))
            .or_else(|| {
                std::env::var("MLFLOW_TRACKING_URI")
                    .ok()
                    .and_then(non_empty)
            })
    }

    /// The address to use: the given one, else the local default.
    pub fn url(&self) -> String {
        self.given().unwrap_or_else(|| DEFAULT_REGISTRY.to_owned())
    }
}

/// A `weir models …` command line a person can copy as printed: the words, then
/// `--registry URL` when it is not the default and the `--token-file` / `--ca-file` this
/// command used (a token itself is never printed; the next person uses their own).
pub fn models_command(registry: &str, client: &ClientArgs, words: &[&str]) -> String {
    let mut parts = vec!["weir".to_owned(), "models".to_owned()];
    parts.extend(words.iter().map(|w| shell_word(w)));
    if registry.trim_end_matches('/') != DEFAULT_REGISTRY {
        parts.extend(["--registry".to_owned(), shell_word(registry)]);
    }
    if let Some(file) = &client.token_file {
        parts.extend([
            "--token-file".to_owned(),
            shell_word(&file.to_string_lossy()),
        ]);
    }
    if let Some(file) = &client.ca_file {
        parts.extend(["--ca-file".to_owned(), shell_word(&file.to_string_lossy())]);
    }
    parts.join(" ")
}

/// A word as a POSIX shell reads it back unchanged: bare when it is plainly safe, else in
/// single quotes.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The registry's note on a version it cannot serve (`weir.servable=false`), for stderr.
pub fn unservable_warning(version: &Value) -> Option<String> {
    let tags = version["tags"].as_array()?;
    let tag = |key: &str| {
        tags.iter()
            .find(|t| t["key"] == key)
            .and_then(|t| t["value"].as_str())
    };
    (tag(weir_registry::servable::TAG) == Some("false")).then(|| {
        format!(
            "warning: version {} of '{}' cannot be approved or given a protected alias: {}",
            text(&version["version"]),
            text(&version["name"]),
            tag(weir_registry::servable::REASON_TAG).unwrap_or("weir cannot serve it")
        )
    })
}

use weir_http::utc::utc_seconds;

/// A token kept in a file (`--token-file`, `--registry-token-file`): its contents without
/// surrounding whitespace. An empty file is an error rather than an anonymous call that fails
/// later with a less helpful refusal. The token itself never appears in an error.
pub fn read_token_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let token = text.trim();
    anyhow::ensure!(
        !token.is_empty(),
        "the token file {} is empty",
        path.display()
    );
    Ok(token.to_owned())
}

pub async fn run(args: ModelsArgs) -> anyhow::Result<()> {
    let registry = args.registry.url();
    let client =
        RegistryClient::new(&registry, args.client.identity()?).with_http(args.client.http()?);
    let json = matches!(args.output, Output::Json);
    let print = crate::output::json;
    let shared = &client;
    let decision = |kind: &'static str, name: String, version: String, comment: String| async move {
        let status = shared
            .decide(kind, &name, &version, &comment)
            .await
            .with_context(|| format!("{kind} failed"))?;
        anyhow::Ok(status)
    };
    match args.command {
        ModelsCommand::Register {
            name,
            path,
            description,
        } => {
            let version = client
                .register(&name, &path, &description)
                .await
                .context("registration failed")?;
            if let Some(warning) = unservable_warning(&version) {
                eprintln!("{warning}");
            }
            if json {
                print(&version);
            } else {
                let number = text(&version["version"]);
                println!(
                    "registered {name} version {number} from {} (pending approval: another person runs `{}`)",
                    path.display(),
                    models_command(&registry, &args.client, &["approve", &name, &number]),
                );
            }
        }
        ModelsCommand::RequestApproval {
            name,
            version,
            comment,
        } => {
            let status = decision("request", name, version, comment).await?;
            if json {
                print(&status)
            } else {
                println!("{}", approval_line(&status))
            }
        }
        ModelsCommand::Approve {
            name,
            version,
            comment,
        } => {
            let status = decision("approve", name, version, comment).await?;
            if json {
                print(&status)
            } else {
                println!("{}", approval_line(&status))
            }
        }
        ModelsCommand::Reject {
            name,
            version,
            comment,
        } => {
            let status = decision("reject", name, version, comment).await?;
            if json {
                print(&status)
            } else {
                println!("{}", approval_line(&status))
            }
        }
        ModelsCommand::Alias {
            name,
            alias,
            version,
        } => {
            client
                .set_alias(&name, &alias, &version)
                .await
                .context("setting the alias failed")?;
            if json {
                print(&serde_json::json!({"name": name, "alias": alias, "version": version}))
            } else {
                println!("{name}@{alias} -> version {version}")
            }
        }
        ModelsCommand::List => {
            let answer = client
                .get("/api/2.0/mlflow/registered-models/search?max_results=1000")
                .await
                .context("listing failed")?;
            if json {
                print(&answer["registered_models"]);
                return Ok(());
            }
            let rows = answer["registered_models"]
                .as_array()
                .map(|models| {
                    models
                        .iter()
                        .map(|m| {
                            let aliases: Vec<String> = m["aliases"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|a| format!("{}={}", text(&a["alias"]), text(&a["version"])))
                                .collect();
                            vec![text(&m["name"]), aliases.join(","), text(&m["description"])]
                        })
                        .collect()
                })
                .unwrap_or_default();
            table(&["name", "aliases", "description"], rows);
        }
        ModelsCommand::Show { name } => {
            let versions = client.get(&format!("/api/2.0/mlflow/model-versions/search?filter=name%3D%27{name}%27&max_results=1000")).await.context("show failed")?;
            let mut rows = Vec::new();
            let mut full = Vec::new();
            for version in versions["model_versions"].as_array().into_iter().flatten() {
                let number = text(&version["version"]);
                let approval = &client
                    .approval(&name, &number)
                    .await
                    .context("show failed")?;
                let servable = if unservable_warning(version).is_some() {
                    "no"
                } else {
                    "yes"
                };
                rows.push(vec![
                    number,
                    text(&version["user_id"]),
                    if approval["approved"] == Value::Bool(true) {
                        "approved".to_owned()
                    } else {
                        format!(
                            "{}/{}",
                            approval["approved_by"].as_array().map_or(0, Vec::len),
                            text(&approval["required_approvals"])
                        )
                    },
                    text(&version["aliases"]),
                    text(&version["current_stage"]),
                    servable.to_owned(),
                    text(&version["source"]),
                ]);
                full.push(serde_json::json!({ "model_version": version, "approval": approval }));
            }
            if json {
                print(&Value::Array(full));
                return Ok(());
            }
            table(
                &[
                    "version", "creator", "approval", "aliases", "stage", "servable", "source",
                ],
                rows,
            );
        }
        ModelsCommand::Audit {
            name,
            user,
            action,
            limit,
        } => {
            let mut query = format!("max_results={limit}");
            for (key, value) in [("name", name), ("user", user), ("action", action)] {
                if let Some(value) = value {
                    query.push_str(&format!("&{key}={value}"));
                }
            }
            let answer = client
                .get(&format!("/api/2.0/weir/audit/list?{query}"))
                .await
                .context("reading the audit log failed")?;
            if json {
                print(&answer["events"]);
                return Ok(());
            }
            let rows = answer["events"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    vec![
                        text(&e["id"]),
                        e["timestamp"].as_i64().map(utc_seconds).unwrap_or_default(),
                        text(&e["user"]),
                        text(&e["action"]),
                        text(&e["model"]),
                        text(&e["version"]),
                        text(&e["before"]),
                        text(&e["after"]),
                    ]
                })
                .collect();
            table(
                &[
                    "id", "time", "user", "action", "model", "version", "before", "after",
                ],
                rows,
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(token_file: Option<&str>, ca_file: Option<&str>) -> ClientArgs {
        ClientArgs {
            acting_as: Some("alice".into()),
            token: None,
            token_file: token_file.map(PathBuf::from),
            ca_file: ca_file.map(PathBuf::from),
        }
    }

    #[test]
    fn printed_commands_name_a_non_default_registry_and_the_files_used() {
        assert_eq!(
            models_command(
                DEFAULT_REGISTRY,
                &client(None, None),
                &["approve", "iris", "1"]
            ),
            "weir models approve iris 1"
        );
        assert_eq!(
            models_command(
                "http://127.0.0.1:5001",
                &client(Some("alice token"), Some("ca.pem")),
                &["approve", "iris", "1"]
            ),
            "weir models approve iris 1 --registry http://127.0.0.1:5001 --token-file 'alice token' --ca-file ca.pem"
        );
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
