//! The registry import: `ingest-server registry import vehicles.csv
//! owners.csv` fills the SQL registry's tables.
//!
//! The import is all or nothing: both files are validated line by line
//! (plate grammar, colour, national ID, owner references, duplicates), every
//! problem is reported with its file and line, and only a clean pair is
//! written, in one transaction.
//!
//! Minimum collection (Decree 13/2023): no channel reaches an owner by
//! phone, so a `phone` column in `owners.csv` (older exports have one) is
//! read past and never stored, like the phone the HTTP gateway may send;
//! the owners' `phone` column stays empty (migration 0018 emptied it).
//!
//! What it writes is the registry itself (`copied_at` empty, migration
//! 0019), never deleted by retention, unlike the gateway's copies.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use plate_ocr::plate::PlateGrammar;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use thiserror::Error;

use super::{COLOURS, Owner, Vehicle, upsert_owner, upsert_vehicle};
use crate::db::{Db, DbError};

/// One problem found in an import file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportProblem {
    /// File name.
    pub file: String,
    /// 1-based line number (the header is line 1).
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ImportProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// Result of an import.
#[derive(Debug, Error)]
pub enum ImportError {
    /// The files have problems; nothing was written.
    #[error("{} problem(s); nothing imported", .0.len())]
    Invalid(Vec<ImportProblem>),
    /// A file could not be read.
    #[error("reading {path}: {message}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        message: String,
    },
    /// Database failure.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        ImportError::Db(DbError::Sqlx(e))
    }
}

fn read_csv<T: for<'de> Deserialize<'de>>(
    path: &Path,
    problems: &mut Vec<ImportProblem>,
) -> Result<Vec<(u64, T)>, ImportError> {
    let file = path.display().to_string();
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| ImportError::Read {
            path: file.clone(),
            message: e.to_string(),
        })?;
    let mut out = Vec::new();
    for (i, rec) in reader.deserialize::<T>().enumerate() {
        let line = i as u64 + 2;
        match rec {
            Ok(r) => out.push((line, r)),
            Err(e) => problems.push(ImportProblem {
                file: file.clone(),
                line: e.position().map_or(line, |p| p.line()),
                message: e.to_string(),
            }),
        }
    }
    Ok(out)
}

fn empty_none(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.is_empty())
}

/// Validates and imports `vehicles.csv` and `owners.csv` (see the README for
/// the columns; a `phone` column is read past, see the module
/// documentation). Returns (vehicles, owners) written.
pub async fn import(
    db: &Db,
    grammar: &PlateGrammar,
    vehicles_csv: &Path,
    owners_csv: &Path,
) -> Result<(usize, usize), ImportError> {
    let mut problems = Vec::new();
    let owners: Vec<(u64, Owner)> = read_csv(owners_csv, &mut problems)?;
    let vehicles: Vec<(u64, Vehicle)> = read_csv(vehicles_csv, &mut problems)?;
    let of = owners_csv.display().to_string();
    let vf = vehicles_csv.display().to_string();
    let mut problem = |file: &str, line: u64, message: String| {
        problems.push(ImportProblem {
            file: file.to_owned(),
            line,
            message,
        })
    };

    let mut owner_ids = HashSet::new();
    let mut clean_owners = Vec::new();
    for (line, mut o) in owners {
        o.email = empty_none(o.email);
        o.vneid = empty_none(o.vneid);
        if o.owner_id.is_empty() || o.full_name.is_empty() || o.address.is_empty() {
            problem(
                &of,
                line,
                "owner_id, full_name and address are required".into(),
            );
        } else if !(o.national_id.len() == 12 || o.national_id.len() == 9)
            || !o.national_id.bytes().all(|b| b.is_ascii_digit())
        {
            problem(
                &of,
                line,
                // The value is someone's ID number, or nearly: named, not
                // printed (the problems go to stderr and the logs).
                "national_id: expected 12 digits (CCCD) or 9 (CMND)".into(),
            );
        } else if !owner_ids.insert(o.owner_id.clone()) {
            problem(
                &of,
                line,
                format!("owner_id {:?} appears twice", o.owner_id),
            );
        } else {
            clean_owners.push(o);
        }
    }
    let known: HashSet<String> = sqlx::query("SELECT owner_id FROM owners")
        .fetch_all(db.pool())
        .await?
        .iter()
        .filter_map(|r| r.try_get::<String, _>(0).ok())
        .collect();
    let mut plates = HashMap::new();
    let mut clean_vehicles = Vec::new();
    for (line, mut v) in vehicles {
        match grammar.parse(&v.plate_text) {
            Ok(p) => v.plate_text = p.canonical,
            Err(e) => {
                problem(&vf, line, format!("plate {:?}: {e}", v.plate_text));
                continue;
            }
        }
        v.plate_colour = v.plate_colour.to_lowercase();
        if !COLOURS.contains(&v.plate_colour.as_str()) {
            problem(
                &vf,
                line,
                format!(
                    "plate_colour {:?}: expected one of {COLOURS:?}",
                    v.plate_colour
                ),
            );
        } else if v.vehicle_type.is_empty() || v.registration_status.is_empty() {
            problem(
                &vf,
                line,
                "vehicle_type and registration_status are required".into(),
            );
        } else if !owner_ids.contains(&v.owner_id) && !known.contains(&v.owner_id) {
            problem(
                &vf,
                line,
                format!(
                    "owner_id {:?} is in neither owners file nor database",
                    v.owner_id
                ),
            );
        } else if let Some(first) =
            plates.insert((v.plate_text.clone(), v.plate_colour.clone()), line)
        {
            problem(
                &vf,
                line,
                format!(
                    "plate {} ({}) also on line {first}",
                    v.plate_text, v.plate_colour
                ),
            );
        } else {
            clean_vehicles.push(v);
        }
    }
    if !problems.is_empty() {
        return Err(ImportError::Invalid(problems));
    }

    let mut tx = db.begin_write().await?;
    for o in &clean_owners {
        upsert_owner(&mut tx, o, None).await?;
    }
    for v in &clean_vehicles {
        upsert_vehicle(&mut tx, v, None).await?;
    }
    tx.commit().await?;
    Ok((clean_vehicles.len(), clean_owners.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A malformed ID number is reported by file, line and field, and its
    /// value is not in the message (printed to stderr, kept in logs).
    #[tokio::test]
    async fn a_malformed_national_id_is_named_not_printed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&Db::sqlite_url(&dir.path().join("t.db")))
            .await
            .unwrap();
        let (owners, vehicles) = (dir.path().join("o.csv"), dir.path().join("v.csv"));
        std::fs::write(
            &owners,
            "owner_id,full_name,national_id,address,email,vneid\n\
             o1,Hoàng Thị Giang,00119901234,\"5 Tràng Tiền, Hà Nội\",,\n",
        )
        .unwrap();
        std::fs::write(
            &vehicles,
            "plate_text,plate_colour,vehicle_type,make,colour,registration_status,owner_id\n",
        )
        .unwrap();
        let err = import(&db, PlateGrammar::builtin(), &vehicles, &owners)
            .await
            .unwrap_err();
        let ImportError::Invalid(problems) = &err else {
            panic!("{err}")
        };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, 2);
        assert!(problems[0].message.contains("national_id"), "{problems:?}");
        let shown = format!("{err} {problems:?}");
        assert!(!shown.contains("00119901234"), "{shown}");
    }

    /// A `phone` column (older exports have one) is read past: the import
    /// works and keeps no phone, and a number kept from before is emptied
    /// when its owner is imported again. A file without the column imports
    /// too.
    #[tokio::test]
    async fn a_phone_column_is_read_past_and_never_stored() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&Db::sqlite_url(&dir.path().join("t.db")))
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO owners (owner_id, full_name, national_id, address, phone) \
             VALUES ('o1', 'Cũ', '001199012345', 'Hà Nội', '0900000000')",
        )
        .execute(db.pool())
        .await
        .unwrap();
        let (owners, vehicles) = (dir.path().join("o.csv"), dir.path().join("v.csv"));
        std::fs::write(
            &owners,
            "owner_id,full_name,national_id,address,phone,email,vneid\n\
             o1,Hoàng Thị Giang,001199012345,\"5 Tràng Tiền, Hà Nội\",0912345678,,\n\
             o2,Vũ Văn Hải,001088054321,\"9 Hàng Bài, Hà Nội\",+84 98 765 4321,hai@example.vn,\n",
        )
        .unwrap();
        std::fs::write(
            &vehicles,
            "plate_text,plate_colour,vehicle_type,make,colour,registration_status,owner_id\n\
             30A-123.45,white,car,Toyota Vios,white,active,o1\n\
             30A-123.46,white,car,Mazda 3,red,active,o2\n",
        )
        .unwrap();
        let grammar = PlateGrammar::builtin();
        assert_eq!(
            import(&db, grammar, &vehicles, &owners).await.unwrap(),
            (2, 2)
        );
        let kept: Vec<(String, Option<String>, Option<String>)> =
            sqlx::query("SELECT full_name, phone, email FROM owners ORDER BY owner_id")
                .fetch_all(db.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
        assert_eq!(
            kept,
            [
                ("Hoàng Thị Giang".to_string(), None, None),
                (
                    "Vũ Văn Hải".to_string(),
                    None,
                    Some("hai@example.vn".to_string())
                ),
            ]
        );
        std::fs::write(
            &owners,
            "owner_id,full_name,national_id,address,email,vneid\n\
             o3,Lê Văn C,079123456789,Đà Nẵng,,\n",
        )
        .unwrap();
        std::fs::write(
            &vehicles,
            "plate_text,plate_colour,vehicle_type,make,colour,registration_status,owner_id\n\
             43A-111.11,white,car,Kia,white,active,o3\n",
        )
        .unwrap();
        assert_eq!(
            import(&db, grammar, &vehicles, &owners).await.unwrap(),
            (1, 1)
        );
    }
}
