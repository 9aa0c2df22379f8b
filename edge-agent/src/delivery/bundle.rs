//! Reading an outbox row's evidence back from the spool into what goes on
//! the wire: an event's [`EventBundle`], a clip's [`ClipChunk`]s.
//!
//! A bundle must fit the protocol's [`MAX_BUNDLE_BYTES`]: a 4K camera's
//! full-frame stills can exceed it, and such an event used to fail to
//! encode and was given up on, so not even its signed record reached the
//! server. Now the largest stills are left out until it fits ([`fit`]):
//! a still listed in the signed manifest but not attached is recorded as
//! missing by the server, as for a still gone from the spool, and the
//! violation itself is delivered.
//!
//! That is a last resort: stills are bounded where they are made, before
//! they are signed, so that an event's stills always fit together
//! (`evidence::stills::jpeg_fitted`). A still left out all the same never
//! left the box: the delivery loop records it in the outbox
//! ([`crate::outbox::Outbox::keep_unsent_stills`]) before the bundle goes,
//! and the ack that deletes the rest of the event's files keeps it on disk.

use super::pump::SPOOL_TRIES;
use crate::outbox::{PendingClip, PendingEvent};
use protocol::transfer::MAX_BUNDLE_BYTES;
use protocol::{Attachment, ClipChunk, EventBundle, SignedEvent};

/// Which unreadable evidence files are taken for lost (sent without).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Leniency {
    /// None: a file that cannot be read holds its row back.
    Strict,
    /// Files damaged themselves ([`file_damaged`]).
    Damaged,
    /// Any, after [`SPOOL_TRIES_MAX`] tries.
    Any,
}

/// Why a pending event or clip was not sent this turn.
pub(super) enum Unsendable {
    /// A passing failure (a file that could not be read now: too many open
    /// files, an I/O error): tried again at its next turn.
    Later,
    /// It can never be sent as stored.
    Never,
}

/// Reads an evidence file; a file that is gone is `None` (the server then
/// records it as missing), any other failure is passing.
pub(super) fn read_evidence(
    path: &std::path::Path,
    event_id: &uuid::Uuid,
    lenient: Leniency,
) -> Result<Option<Vec<u8>>, Unsendable> {
    match std::fs::read(path) {
        Ok(data) => Ok(Some(data)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            tracing::error!(%event_id, file = %path.display(), "evidence file gone from the spool; sending without it");
            Ok(None)
        }
        // Only a file that is itself damaged is given up on; a box-wide
        // failure (too many open files, no memory, a permission gone wrong)
        // waits however long it lasts: sending without the stills then
        // would lose them for every event at once.
        Err(err)
            if lenient == Leniency::Any || (lenient == Leniency::Damaged && file_damaged(&err)) =>
        {
            tracing::error!(%event_id, file = %path.display(), error = %err, "evidence file still unreadable after {SPOOL_TRIES} tries; sending without it");
            Ok(None)
        }
        Err(err) => {
            tracing::warn!(%event_id, file = %path.display(), error = %err, "evidence file unreadable now; sending later");
            Err(Unsendable::Later)
        }
    }
}

/// Whether a read failed because of the file itself (an I/O error on its
/// blocks, a corrupted file system entry, something other than a file in
/// its place). Linux error numbers.
fn file_damaged(err: &std::io::Error) -> bool {
    const EIO: i32 = 5;
    const ENXIO: i32 = 6;
    const EBADMSG: i32 = 74;
    const EUCLEAN: i32 = 117;
    err.kind() == std::io::ErrorKind::IsADirectory
        || matches!(err.raw_os_error(), Some(EIO | ENXIO | EBADMSG | EUCLEAN))
}

/// The SHA-256 the event's signed manifest gives each of its files, by name.
fn manifest_hashes(event: &SignedEvent) -> std::collections::HashMap<String, String> {
    event
        .payload()
        .get("evidence")
        .cloned()
        .and_then(|v| serde_json::from_value::<Vec<protocol::EvidenceItem>>(v).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|item| (item.name, item.sha256))
        .collect()
}

/// An event's bundle, and the stills that were left out of it to fit
/// ([`fit`]): still on disk, never sent.
#[derive(Debug)]
pub(super) struct Bundle {
    /// The encoded bundle.
    pub bytes: Vec<u8>,
    /// Names of the stills left out to fit the limit.
    pub unsent: Vec<String>,
}

/// The bundle for an event: the signed envelope and its still files, read
/// back from the spool. A still that has vanished from the spool is logged
/// and left out (the server then records it as missing); one that cannot
/// be read just now holds the event back, so a passing failure never
/// costs a still (the server keeps the first copy it stores). A still whose
/// bytes no longer match the signed manifest (storage that rotted) is left
/// out like a vanished one: sent, it would make the server refuse the whole
/// event, and this box would set the violation aside for one bad file.
pub(super) fn bundle_bytes(e: &PendingEvent, lenient: Leniency) -> Result<Bundle, Unsendable> {
    let event = match SignedEvent::from_json(&e.event_json) {
        Ok(ev) => ev,
        Err(err) => {
            tracing::error!(event_id = %e.event_id, error = %err, "stored event does not parse");
            return Err(Unsendable::Never);
        }
    };
    let signed = manifest_hashes(&event);
    let mut attachments = Vec::with_capacity(e.stills.len());
    for name in &e.stills {
        if let Some(data) = read_evidence(&e.dir.join(name), &e.event_id, lenient)? {
            if signed
                .get(name)
                .is_some_and(|h| *h != protocol::sha256_hex(&data))
            {
                tracing::error!(event_id = %e.event_id, file = %name, "evidence file no longer matches its signed hash (damaged storage); sending without it");
                continue;
            }
            attachments.push(Attachment {
                name: name.clone(),
                data,
            });
        }
    }
    let unsent = fit(&e.event_id, &event, &mut attachments);
    (EventBundle { event, attachments })
        .encode()
        .map(|bytes| Bundle { bytes, unsent })
        .map_err(|err| {
            tracing::error!(event_id = %e.event_id, error = %err, "bundle could not be encoded");
            Unsendable::Never
        })
}

/// Leaves out the largest attachments until the bundle fits
/// [`MAX_BUNDLE_BYTES`] (the module doc says why), logging each; returns
/// their names.
fn fit(
    event_id: &uuid::Uuid,
    event: &SignedEvent,
    attachments: &mut Vec<Attachment>,
) -> Vec<String> {
    // As `EventBundle::encode` counts: magic and length, the event JSON,
    // and per attachment two lengths, its name and its bytes.
    let json = event.to_json().map(|j| j.len()).unwrap_or(0);
    let size = |a: &Attachment| 6 + a.name.len() + a.data.len();
    let mut total = 8 + json + attachments.iter().map(size).sum::<usize>();
    let mut unsent = Vec::new();
    while total > MAX_BUNDLE_BYTES {
        let Some((i, _)) = attachments
            .iter()
            .enumerate()
            .max_by_key(|(_, a)| a.data.len())
        else {
            break;
        };
        let dropped = attachments.remove(i);
        total -= size(&dropped);
        tracing::error!(%event_id, file = %dropped.name, bytes = dropped.data.len(), limit = MAX_BUNDLE_BYTES, "the stills exceed the bundle limit; sending without the largest (the server records it missing, the box keeps it)");
        unsent.push(dropped.name);
    }
    unsent
}

pub(super) fn clip_chunks(
    c: &PendingClip,
    lenient: Leniency,
) -> Result<Vec<ClipChunk>, Unsendable> {
    match read_evidence(&c.path, &c.event_id, lenient)? {
        Some(bytes) => Ok(ClipChunk::split(c.event_id, &c.name, &bytes)),
        None => Err(Unsendable::Never),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_still_is_left_out_but_an_unreadable_one_holds_the_event_back() {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        let file = dir.path().join("at.jpg");
        std::fs::write(&file, b"jpeg").unwrap();
        assert!(matches!(read_evidence(&file, &id, Leniency::Strict), Ok(Some(d)) if d == b"jpeg"));
        assert!(matches!(
            read_evidence(&dir.path().join("gone.jpg"), &id, Leniency::Strict),
            Ok(None)
        ));
        // A read that fails for another reason than absence (here: a
        // directory where the file should be) is passing, not a loss.
        let odd = dir.path().join("after.jpg");
        std::fs::create_dir(&odd).unwrap();
        assert!(matches!(
            read_evidence(&odd, &id, Leniency::Strict),
            Err(Unsendable::Later)
        ));
        // After its tries, a damaged file is taken for lost rather than
        // holding the row; a box-wide failure is not.
        assert!(matches!(
            read_evidence(&odd, &id, Leniency::Damaged),
            Ok(None)
        ));
        assert!(!file_damaged(&std::io::Error::from_raw_os_error(24)));
        assert!(file_damaged(&std::io::Error::from_raw_os_error(5)));

        let clip = |path: std::path::PathBuf| PendingClip {
            seq: 1,
            event_id: id,
            path,
            name: "clip.mp4".into(),
        };
        assert!(matches!(
            clip_chunks(&clip(odd.clone()), Leniency::Strict),
            Err(Unsendable::Later)
        ));
        assert!(matches!(
            clip_chunks(&clip(odd), Leniency::Damaged),
            Err(Unsendable::Never)
        ));
        assert!(matches!(
            clip_chunks(&clip(dir.path().join("gone.mp4")), Leniency::Strict),
            Err(Unsendable::Never)
        ));
        assert_eq!(
            clip_chunks(&clip(file), Leniency::Strict)
                .ok()
                .map(|c| c.len()),
            Some(1)
        );
    }

    /// A violation whose stills together exceed the bundle limit (a 4K
    /// camera's full frames) still reaches the server: the largest stills
    /// are left out until it fits, the smaller ones and the signed event go.
    /// Files of a violation whose stills together exceed the bundle
    /// limit (a 4K camera's full frames), written in `dir`, and its signed
    /// envelope.
    fn oversized(dir: &std::path::Path) -> (uuid::Uuid, SignedEvent, Vec<String>) {
        let mb = 1 << 20;
        let files = [
            ("at.jpg", 7 * mb),
            ("before.jpg", 6 * mb),
            ("after.jpg", 5 * mb),
            ("plate.jpg", 30_000),
        ];
        let evidence: Vec<_> = files
            .iter()
            .enumerate()
            .map(|(i, (name, len))| {
                let data = vec![i as u8; *len];
                std::fs::write(dir.join(name), &data).unwrap();
                protocol::EvidenceItem::from_bytes(
                    *name,
                    "image/jpeg",
                    protocol::EvidenceRole::Frame,
                    &data,
                )
            })
            .collect();
        let id = uuid::Uuid::new_v4();
        // Only the envelope's shape matters here: it is read back, not
        // verified.
        let signed = SignedEvent::from_value(serde_json::json!({
            "kind": "violation", "device_id": "d", "signature": "s",
            "payload": {"event_id": id, "evidence": evidence},
        }))
        .unwrap();
        (
            id,
            signed,
            files.iter().map(|(n, _)| n.to_string()).collect(),
        )
    }

    /// A violation whose stills together exceed the bundle limit (a 4K
    /// camera's full frames) still reaches the server: the largest stills
    /// are left out until it fits, the smaller ones and the signed event go.
    #[test]
    fn a_bundle_over_the_limit_drops_its_largest_stills_and_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let (id, signed, stills) = oversized(dir.path());
        let pending = PendingEvent {
            seq: 1,
            event_id: id,
            camera_id: "cam".into(),
            event_json: signed.to_json().unwrap(),
            dir: dir.path().to_path_buf(),
            stills,
            created_at: 0,
        };
        let Ok(Bundle { bytes, unsent }) = bundle_bytes(&pending, Leniency::Strict) else {
            panic!("an oversized bundle was not sent");
        };
        assert!(bytes.len() <= MAX_BUNDLE_BYTES);
        let bundle = EventBundle::decode(&bytes).unwrap();
        let names: Vec<_> = bundle.attachments.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["before.jpg", "after.jpg", "plate.jpg"]);
        assert_eq!(unsent, ["at.jpg"]);
        assert_eq!(bundle.event, signed);
    }

    /// A still left out of the bundle never left the box: the ack that
    /// deletes the delivered files keeps it on disk (with the signed event
    /// beside it), and the outbox says which event holds it.
    #[test]
    fn an_ack_after_a_still_was_left_out_keeps_the_unsent_still_on_disk() {
        use crate::outbox::{AckOutcome, Outbox, OutboxLimits, Pending};
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spool").join("ev");
        std::fs::create_dir_all(&dir).unwrap();
        let (id, signed, _) = oversized(&dir);
        std::fs::write(dir.join(crate::recover::SIGNED_FILE), b"{}").unwrap();
        let mut outbox =
            Outbox::open(&tmp.path().join("outbox.db"), OutboxLimits::default()).unwrap();
        assert!(outbox.enqueue(&signed, "cam", &dir).unwrap());
        let due = outbox
            .due(
                crate::outbox::now_ms(),
                std::time::Duration::from_secs(30),
                0,
                10,
            )
            .unwrap();
        let [Pending::Event(e)] = due.as_slice() else {
            panic!("{due:?}");
        };
        // What the delivery loop does with the bundle (`pump.rs`).
        let Ok(b) = bundle_bytes(e, Leniency::Strict) else {
            panic!("not sent");
        };
        assert_eq!(b.unsent, ["at.jpg"]);
        outbox.keep_unsent_stills(e.seq, &b.unsent).unwrap();
        outbox
            .mark_sent(
                e.seq,
                crate::outbox::now_ms(),
                &protocol::sha256_hex(&b.bytes),
            )
            .unwrap();
        let outcome = outbox.apply_ack(&protocol::Ack::stored(id)).unwrap();
        assert_eq!(outcome, AckOutcome::Delivered { done: true });
        assert!(
            dir.join("at.jpg").exists(),
            "the still that was never sent was deleted"
        );
        assert!(dir.join(crate::recover::SIGNED_FILE).exists());
        for sent in ["before.jpg", "after.jpg", "plate.jpg"] {
            assert!(!dir.join(sent).exists(), "{sent} was delivered and kept");
        }
        assert_eq!(
            outbox.unsent_stills_kept().unwrap(),
            [(id, dir.clone(), vec!["at.jpg".to_string()])]
        );
        assert_eq!(
            outbox
                .stats(crate::outbox::now_ms())
                .unwrap()
                .stills_kept_unsent,
            1
        );
        // Kept for a technician for the age limit after the ack, then
        // deleted and recorded: no disk filled, no alarm held for good.
        let later =
            crate::outbox::now_ms() + OutboxLimits::default().max_age.as_millis() as i64 + 1;
        let evicted = outbox.enforce_limits(later).unwrap();
        assert!(
            evicted
                .iter()
                .any(|e| e.what == "stills" && e.event_id == id.to_string()),
            "{evicted:?}"
        );
        assert!(!dir.exists(), "the kept still and its directory are gone");
        assert!(outbox.unsent_stills_kept().unwrap().is_empty());
        assert_eq!(outbox.stats(later).unwrap().stills_kept_unsent, 0);
    }
}
