//! `ingest-server user …`: console accounts and API tokens from the
//! command line (the first administrator, and tokens for integrations),
//! each change audited as the command-line administrator.

use anyhow::{Context, Result};
use ingest_server::config::Config;
use ingest_server::workflow::Role;
use ingest_server::{accounts, app};

use super::{UserAction, cli_admin};

pub(super) async fn user(cfg: Config, action: UserAction) -> Result<()> {
    let ingestor = app::open(&cfg).await?;
    let db = &ingestor.context().db;
    let by = cli_admin();
    match action {
        UserAction::Add {
            username,
            display_name,
            role,
            password_file,
            sso_only,
        } => {
            let role = Role::parse(&role).with_context(|| {
                format!("unknown role `{role}` (operator, police, supervisor, auditor, admin)")
            })?;
            let password = if sso_only {
                None
            } else {
                let line = match password_file {
                    Some(p) => std::fs::read_to_string(&p)
                        .with_context(|| format!("reading {}", p.display()))?,
                    None => {
                        let mut l = String::new();
                        std::io::stdin()
                            .read_line(&mut l)
                            .context("reading the password")?;
                        l
                    }
                };
                Some(line.lines().next().unwrap_or("").to_string())
            };
            let u = accounts::create(db, &username, &display_name, role, password.as_deref(), &by)
                .await?;
            println!("created {} ({}) as {}", u.username, u.display_name, u.role);
        }
        UserAction::List => {
            for u in accounts::list(db).await? {
                let state = if u.disabled { "disabled" } else { "active" };
                println!("{}\t{}\t{}\t{}", u.username, u.role, state, u.display_name);
            }
        }
        UserAction::Token {
            username,
            label,
            days,
        } => {
            let t = ingest_server::api_tokens::create(db, &username, &label, days, &by).await?;
            println!("token id: {}", t.token_id);
            println!(
                "token: {}  (shown once: Authorization: Bearer <token>)",
                t.token
            );
        }
        UserAction::RevokeToken { token_id } => {
            ingest_server::api_tokens::revoke(db, &token_id, &by).await?;
            println!("revoked token {token_id}");
        }
        UserAction::Disable { username } => {
            let u = accounts::disable(db, &username, &by).await?;
            println!("disabled {}", u.username);
        }
    }
    Ok(())
}
