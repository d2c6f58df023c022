//! `mnemo keys …`: making, listing and revoking API keys on the configured database. The key
//! itself is printed once, at creation, and never stored.

use clap::Subcommand;

use crate::config::Config;
use crate::model::NewApiKey;
use crate::persistence::Persistence;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a key; prints the key, and nothing else, on stdout.
    Create {
        /// The user the key acts as (a user principal).
        #[arg(long, conflicts_with = "service", required_unless_present = "service")]
        user: Option<String>,
        /// Make a service key, which may act for any user.
        #[arg(long)]
        service: bool,
        /// A name to recognise the key by in `mnemo keys list`.
        #[arg(long)]
        name: Option<String>,
        /// The key stops working after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List keys: id, name, principal, created, last used, expiry (never the key).
    List,
    /// Revoke a key by its id; every replica refuses it within a second.
    Revoke { key_id: String },
}

pub async fn run(config: &Config, command: KeysCommand) -> Result<(), String> {
    let (db, arbiter) = crate::startup::open_persistence(config).await?;
    let result = execute(&db, command).await;
    let _ = db.shutdown(config.shutdown_timeout()).await;
    arbiter.stop();
    let _ = arbiter.join();
    result
}

async fn execute(db: &Persistence, command: KeysCommand) -> Result<(), String> {
    match command {
        KeysCommand::Create {
            user,
            service,
            name,
            expires_in_days,
        } => {
            let user_id = match user {
                Some(u) if u.trim().is_empty() => return Err("--user must not be empty".into()),
                Some(u) => Some(u),
                None if service => None,
                None => return Err("give --user <user_id> or --service".into()),
            };
            let (key, key_id) = super::generate_key()?;
            let expires_at =
                expires_in_days.map(|d| chrono::Utc::now() + chrono::Duration::days(i64::from(d)));
            let name = name.unwrap_or_else(|| match &user_id {
                Some(u) => format!("user {u}"),
                None => "service".into(),
            });
            db.create_api_key(NewApiKey {
                key_id: key_id.clone(),
                name,
                user_id,
                key_hash: super::keys::hash_key(&key),
                expires_at,
            })
            .await
            .map_err(|e| format!("while storing the key: {e}"))?;
            log::info!("API key {key_id} created");
            println!("{key}");
            Ok(())
        }
        KeysCommand::List => {
            let keys = db
                .list_api_keys()
                .await
                .map_err(|e| format!("while listing keys: {e}"))?;
            let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or("-".to_string(), |t| {
                    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
                })
            };
            println!("ID\tNAME\tPRINCIPAL\tCREATED\tLAST USED\tEXPIRES\tREVOKED");
            for k in keys {
                let principal = match &k.user_id {
                    Some(u) => format!("user:{u}"),
                    None => "service".into(),
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    k.key_id,
                    k.name,
                    principal,
                    when(Some(k.created_at)),
                    when(k.last_used_at),
                    when(k.expires_at),
                    when(k.revoked_at),
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { key_id } => {
            db.revoke_api_key(key_id.clone())
                .await
                .map_err(|e| format!("while revoking {key_id}: {e}"))?;
            println!("revoked {key_id}");
            Ok(())
        }
    }
}
