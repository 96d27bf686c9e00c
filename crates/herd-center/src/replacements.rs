//! The replacement table (SPEC §3.3.4, seed 002 S16–S20): for a program on a platform, the
//! approved alternatives in order of preference, each named by program, vendor and version.
//! An alternative the catalog has as a program release with an `archive` package for the
//! platform is distributed as that signed target; any other is used only where a terminal
//! already has it. `faults::decide` consults it when no rule names a fault's cause.

use herd_proto::fault::{ReplacementEntry, ReplacementList};
use herd_store::ReplacementRow;

use crate::Center;
use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::faults::{parse_stored, program_target};

impl Center {
    /// The table, by program and platform, each alternative with the signed target it is
    /// distributed as today (none: used only where a terminal has it).
    pub async fn replacements(&self) -> CenterResult<ReplacementList> {
        let catalog = self.catalog();
        let withdrawn = self.withdrawn_releases();
        let mut entries = self.replacement_docs().await?;
        for entry in &mut entries {
            for alternative in &mut entry.alternatives {
                alternative.target =
                    program_target(&catalog.catalog, &withdrawn, alternative, &entry.platform);
            }
        }
        Ok(ReplacementList { entries })
    }

    pub(crate) async fn replacement_docs(&self) -> CenterResult<Vec<ReplacementEntry>> {
        self.store
            .replacements()
            .await?
            .iter()
            .map(|row| parse_stored(&row.doc, "replacement entry"))
            .collect()
    }

    /// Adds or replaces the entry of (`program`, `platform`). Whether an alternative can be
    /// distributed is decided at each fault, from the catalog of the moment (a release
    /// published or withdrawn later counts).
    pub async fn put_replacement(
        &self,
        program: &str,
        platform: &str,
        entry: ReplacementEntry,
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
