//! Signed anchors of the audit chain. The chain finds an edited, inserted
//! or removed entry, but not someone with the database who rewrites the
//! entry they changed *and every one after it*, and the head: the hashes
//! all agree again. An anchor is the chain's head at one moment — its
//! sequence number, its hash and the time — signed with the server key
//! (the key that signs acks and evidence packages, `server_key.rs`) and
//! kept outside the database: printed, filed with a ticket, put on
//! write-once storage (`ingest-server audit anchor --out FILE`). Later,
//! `ingest-server audit verify --anchor FILE` checks that the chain still
//! holds that entry with that hash, so a rewrite of anything up to the
//! anchor is found, and that the anchor is one this server signed (by a
//! key in `server_keys`, before it was retired). The key list is in the
//! database too: someone who can rewrite the chain can add a key of their
//! own, so `audit verify` prints the key each anchor was signed by, to be
//! compared with the key the city published (`key show`).

use serde::{Deserialize, Serialize};
use sqlx::Row;
use thiserror::Error;

use super::{GENESIS, Verification};
use crate::db::{Db, DbError};
use crate::server_key::ServerKey;

/// The chain's head at `at`, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// The head entry's sequence number (0: the chain was empty).
    pub seq: i64,
    /// Its hash, 64 lowercase hex characters.
    pub hash: String,
    /// When the anchor was made, Unix ms.
    pub at: i64,
    /// The server key that signed it, 64 hex characters.
    pub server_key: String,
    /// Ed25519 over [`signing_bytes`], 128 hex characters.
    pub signature: String,
}

/// Why an anchor could not be made or does not hold.
#[derive(Debug, Error)]
pub enum AnchorError {
    #[error(transparent)]
    Db(#[from] DbError),
    /// The server's keys could not be read.
    #[error(transparent)]
    Keys(#[from] crate::server_key::ServerKeyError),
    /// The chain is broken now: no anchor is made of a broken chain.
    #[error("audit log broken at entry {seq}: {problem}")]
    Broken { seq: i64, problem: String },
    /// The file is not an anchor.
    #[error("not an audit anchor: {0}")]
    Malformed(String),
    /// Signed by a key this server never had.
    #[error("anchor signed by {0}, which is not one of this server's keys")]
    UnknownKey(String),
    /// Signed, by its own account, after its key was retired.
    #[error("anchor dated after its key {0} was retired")]
    RetiredKey(String),
    /// The signature does not match the anchor's contents.
    #[error("the anchor's signature does not match its contents")]
    BadSignature,
    /// The anchored entry is gone.
    #[error("entry {seq} of the anchor is not in the audit log")]
    Missing { seq: i64 },
    /// The anchored entry has another hash: the chain was rewritten.
    #[error(
        "entry {seq} has hash {found}, the anchor signed {anchored}: the audit log was rewritten"
    )]
    Rewritten {
        seq: i64,
        anchored: String,
        found: String,
    },
}

/// What is signed: the JSON array `["tv-audit-anchor", seq, hash, at]`.
pub fn signing_bytes(seq: i64, hash: &str, at: i64) -> Vec<u8> {
    serde_json::json!(["tv-audit-anchor", seq, hash, at])
        .to_string()
        .into_bytes()
}

/// Anchors the chain as it is now, after checking the whole of it.
pub async fn make(db: &Db, key: &ServerKey, now_ms: i64) -> Result<Anchor, AnchorError> {
    use ed25519_dalek::Signer;
    let (seq, hash) = match super::verify(db).await? {
        Verification::Intact { entries, head } => (entries, head),
        Verification::Broken { seq, problem } => {
            return Err(AnchorError::Broken { seq, problem });
        }
    };
    let signature = key.signing_key().sign(&signing_bytes(seq, &hash, now_ms));
    Ok(Anchor {
        seq,
        hash,
        at: now_ms,
        server_key: key.public_key_hex(),
        signature: hex::encode(signature.to_bytes()),
    })
}

/// Reads an anchor file's text.
pub fn parse(text: &str) -> Result<Anchor, AnchorError> {
    let a: Anchor =
        serde_json::from_str(text).map_err(|e| AnchorError::Malformed(e.to_string()))?;
    let hex_of = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if a.seq < 0 || !hex_of(&a.hash, 64) {
        return Err(AnchorError::Malformed(
            "seq must be 0 or more and hash 64 lowercase hex characters".into(),
        ));
    }
    if !hex_of(&a.server_key, 64) || !hex_of(&a.signature, 128) {
        return Err(AnchorError::Malformed(
            "server_key must be 64 and signature 128 lowercase hex characters".into(),
        ));
    }
    Ok(a)
}

/// Checks that `anchor` was signed by one of this server's keys and that
/// the chain still holds its entry with its hash.
pub async fn check(db: &Db, anchor: &Anchor) -> Result<(), AnchorError> {
    let known = crate::server_key::list(db).await?;
    let Some((_, _, retired)) = known.iter().find(|(k, _, _)| *k == anchor.server_key) else {
        return Err(AnchorError::UnknownKey(anchor.server_key.clone()));
    };
    if retired.is_some_and(|r| anchor.at > r) {
        return Err(AnchorError::RetiredKey(anchor.server_key.clone()));
    }
    let key = crate::devices::parse_public_key(&anchor.server_key)
        .map_err(|e| AnchorError::Malformed(e.to_string()))?;
    let signature: [u8; 64] = hex::decode(&anchor.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| AnchorError::Malformed("signature is not 64 bytes".into()))?;
    key.verify_strict(
        &signing_bytes(anchor.seq, &anchor.hash, anchor.at),
        &ed25519_dalek::Signature::from_bytes(&signature),
    )
    .map_err(|_| AnchorError::BadSignature)?;
    let found: String = if anchor.seq == 0 {
        GENESIS.to_string()
    } else {
        sqlx::query("SELECT hash FROM audit_log WHERE seq = $1")
            .bind(anchor.seq)
            .fetch_optional(db.pool())
            .await
            .map_err(DbError::from)?
            .ok_or(AnchorError::Missing { seq: anchor.seq })?
            .try_get(0)
            .map_err(DbError::from)?
    };
    if found != anchor.hash {
        return Err(AnchorError::Rewritten {
            seq: anchor.seq,
            anchored: anchor.hash.clone(),
            found,
        });
    }
    Ok(())
}
