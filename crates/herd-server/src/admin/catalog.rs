//! `herd coverage`: the coverage matrix of the center's catalog, as a table or as JSON.

use clap::Args;
use herd_proto::api::CoverageMatrix;

use super::connect::{ServerArgs, Session};
use super::output::{print_json, print_out};
use super::table::Table;
use crate::Outcome;

/// Show the coverage matrix: which product covers which threat, since when.
///
/// Rows are threats (most dangerous first), columns are products. A cell reads `since SEQ`
/// when the product's definitions release SEQ covers the threat, `exp. DATE` when the vendor
/// expects to cover it by then, and `-` when it does not cover it. When Herd's own signature
/// set covers threats (from verdicts), a last column `herd's set` says since when: on every
/// terminal, whatever its product.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd coverage
  herd coverage --json | jq '.threats[] | select(all(.cells[]; .covered | not)) | .threat'")]
pub struct CoverageArgs {
    /// Print the matrix as JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub(super) fn coverage(args: CoverageArgs) -> anyhow::Result<Outcome> {
    let session = Session::open(&args.server)?;
    let matrix = match session.client.coverage() {
        Ok(matrix) => matrix,
        Err(err) => return session.failed("coverage", err),
    };
    if args.json {
        print_json(&matrix)?;
    } else {
        print_out(&coverage_table(&matrix))?;
    }
    Ok(Outcome::Success)
}

fn coverage_table(matrix: &CoverageMatrix) -> String {
    let mut out = format!(
        "catalog revision {}: {} threat{} × {} product{}\n",
        matrix.revision,
        matrix.threats.len(),
        if matrix.threats.len() == 1 { "" } else { "s" },
        matrix.products.len(),
        if matrix.products.len() == 1 { "" } else { "s" },
    );
    if matrix.threats.is_empty() {
        out.push_str("no threats are known yet (vendors publish them with `herd publish`)\n");
        return out;
    }
    let mut header = vec![
        "THREAT".to_owned(),
        "DANGER".to_owned(),
        "DISCOVERED".to_owned(),
    ];
    header.extend(matrix.products.iter().map(|p| p.id.clone()));
    let herd_column = matrix.threats.iter().any(|row| row.herd_since.is_some());
    if herd_column {
        header.push("herd's set".to_owned());
    }
    let mut table = Table::new(header);
    for row in &matrix.threats {
        let mut cells = vec![
            row.threat.clone(),
            row.danger.clone(),
            row.discovered.clone(),
        ];
        for cell in &row.cells {
            cells.push(match (cell.since_seq, cell.covered, &cell.expected) {
                (Some(seq), true, _) => format!("since {seq}"),
                // Announced for a definitions release that is not published yet.
                (Some(seq), false, _) => format!("from {seq} (unreleased)"),
                (None, _, Some(date)) => format!("exp. {date}"),
                (None, _, None) => "-".to_owned(),
            });
        }
        if herd_column {
            cells.push(match &row.herd_since {
                Some(since) => format!("since {since}"),
                None => "-".to_owned(),
            });
        }
        table.row(cells);
    }
    out.push_str(&table.render());
    out.push_str("products:\n");
    for p in &matrix.products {
        let latest = match (&p.latest_version, p.latest_seq) {
            (Some(version), Some(seq)) => format!("latest {version} (seq {seq})"),
            _ => "no release yet".to_owned(),
        };
        out.push_str(&format!(
            "  {}: {} by {}, {latest}\n",
            p.id, p.name, p.vendor
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_proto::api::{CoverageCell, CoverageProduct, CoverageRow};

    #[test]
    fn the_coverage_table_reads_like_the_specification() {
        let cell = |covered, since_seq, expected: Option<&str>| CoverageCell {
            covered,
            since_seq,
            covered_on: None,
            expected: expected.map(str::to_owned),
        };
        let matrix = CoverageMatrix {
            revision: 2,
            products: ["vaccine-a", "vaccine-b"]
                .iter()
                .map(|id| CoverageProduct {
                    id: (*id).to_owned(),
                    vendor: id.replace("vaccine", "maker"),
                    name: id.replace('-', " "),
                    latest_version: Some("1.0".to_owned()),
                    latest_seq: Some(1112),
                })
                .collect(),
            threats: vec![
                CoverageRow {
                    threat: "virus-a".to_owned(),
                    name: "virus a".to_owned(),
                    danger: "high".to_owned(),
                    discovered: "2000-11-10".to_owned(),
                    cells: vec![
                        cell(false, None, Some("2000-11-15")),
                        cell(true, Some(1112), None),
                    ],
                    herd_since: None,
                },
                CoverageRow {
                    threat: "worm-z".to_owned(),
                    name: "worm z".to_owned(),
                    danger: "low".to_owned(),
                    discovered: "2000-11-11".to_owned(),
                    cells: vec![cell(false, None, None), cell(false, Some(1200), None)],
                    herd_since: None,
                },
            ],
        };
        assert_eq!(
            coverage_table(&matrix),
            "catalog revision 2: 2 threats × 2 products
THREAT   DANGER  DISCOVERED  vaccine-a        vaccine-b
virus-a  high    2000-11-10  exp. 2000-11-15  since 1112
worm-z   low     2000-11-11  -                from 1200 (unreleased)
products:
  vaccine-a: vaccine a by maker-a, latest 1.0 (seq 1112)
  vaccine-b: vaccine b by maker-b, latest 1.0 (seq 1112)
"
        );
    }
}
