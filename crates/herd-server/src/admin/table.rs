//! The one table renderer of the admin commands: left-aligned columns, as `herd terminals`,
//! `herd coverage` and `herd groups list` print them.

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub(super) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            rows: vec![header.into_iter().map(Into::into).collect()],
        }
    }

    /// A table without a header row (aligned `key: value` lines).
    pub(super) fn bare() -> Table {
        Table { rows: Vec::new() }
    }

    pub(super) fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        self.rows.push(cells.into_iter().collect());
    }

    pub(super) fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    let pad = widths[i] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_do_not_pad_the_last() {
        let mut table = Table::new(["ID", "USER", "ACTION"]);
        table.row(["45a".to_owned(), "user-a".to_owned(), "switch".to_owned()]);
        table.row(["46c-long".to_owned(), "-".to_owned(), "none".to_owned()]);
        assert_eq!(
            table.render(),
            "ID        USER    ACTION\n45a       user-a  switch\n46c-long  -       none\n"
        );
    }
}
