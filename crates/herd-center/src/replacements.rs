//! The replacement table (SPEC §3.3.4, seed 002 S16–S20): for a program on a platform, the
//! approved alternatives in order of preference, each with the package that installs it (a
//! blob already uploaded to the center) or none, when it is used only where a terminal
//! already has it. `faults::decide` consults it when no rule names a fault's cause.

use herd_proto::fault::{ReplacementEntry, ReplacementList};
use herd_store::ReplacementRow;

use crate::Center;
use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::faults::parse_stored;

impl Center {
    /// The table, by program and platform.
    pub async fn replacements(&self) -> CenterResult<ReplacementList> {
        Ok(ReplacementList {
            entries: self.replacement_docs().await?,
        })
    }

    pub(crate) async fn replacement_docs(&self) -> CenterResult<Vec<ReplacementEntry>> {
        self.store
            .replacements()
            .await?
            .iter()
            .map(|row| parse_stored(&row.doc, "replacement entry"))
            .collect()
    }

    /// Adds or replaces the entry of (`program`, `platform`); every package it names must
    /// be stored at the center already.
    pub async fn put_replacement(
        &self,
        program: &str,
        platform: &str,
        mut entry: ReplacementEntry,
    ) -> CenterResult<ReplacementEntry> {
        if entry.program != program || entry.platform != platform {
            return Err(CenterError::new(
                ErrorKind::DocumentInvalid,
                format!(
                    "the replacement entry: $.program and $.platform ({:?}, {:?}) differ from \
                     the path's ({program:?}, {platform:?})",
                    entry.program, entry.platform
                ),
            ));
        }
        entry.validate("the replacement entry").map_err(|err| {
            CenterError::invalid(ErrorKind::DocumentInvalid, err.to_string(), &err)
        })?;
        for (i, alternative) in entry.alternatives.iter_mut().enumerate() {
            let Some(sha256) = &alternative.package_sha256 else {
                alternative.package_size = None;
                continue;
            };
            if let Some(package) = self.store.package_get(sha256).await? {
                alternative.package_size = Some(package.size);
            } else {
                return Err(CenterError::new(
                    ErrorKind::DocumentInvalid,
                    format!(
                        "the replacement entry: $.alternatives[{i}].package_sha256: no package \
                         {sha256} is stored at the center; upload it first"
                    ),
                ));
            }
        }
        self.store
            .replacement_put(&ReplacementRow {
                program: program.to_owned(),
                platform: platform.to_owned(),
                doc: serde_json::to_string(&entry).expect("an entry serialises"),
            })
            .await?;
        Ok(entry)
    }

    pub async fn delete_replacement(&self, program: &str, platform: &str) -> CenterResult<()> {
        if self.store.replacement_delete(program, platform).await? {
            Ok(())
        } else {
            Err(CenterError::not_found(format!(
                "no replacement entry for {program:?} on {platform:?}"
            )))
        }
    }
}
