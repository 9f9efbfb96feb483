//! `weir models …`: the registry from the command line.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;
use weir_http::HttpClient;
use weir_registry::client::{Identity, RegistryClient};

use crate::output::{table, text, Output};

#[derive(clap::Args)]
pub struct ModelsArgs {
    /// The registry to talk to.
    #[arg(
        long,
        env = "WEIR_REGISTRY",
        default_value = "http://127.0.0.1:5000",
        global = true
    )]
    registry: String,
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
    let client =
        RegistryClient::new(&args.registry, args.client.identity()?).with_http(args.client.http()?);
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
            if json {
                print(&version);
            } else {
                println!(
                    "registered {name} version {} from {} (pending approval)",
                    text(&version["version"]),
                    path.display()
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
                    "version", "creator", "approval", "aliases", "stage", "source",
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
                    "id", "user", "action", "model", "version", "before", "after",
                ],
                rows,
            );
        }
    }
    Ok(())
}
