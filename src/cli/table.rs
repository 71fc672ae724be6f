//! Plain-text tables as the CLI's list commands print them: a header and rows, each column as
//! wide as its widest cell (counted in characters), two spaces between columns, no trailing
//! spaces.

use std::fmt::Write as _;

/// `header` and `rows` as aligned lines, each ending in a newline. Cells are printed as they
/// are: escape text from outside first.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; N]| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    line(header);
    for row in rows {
        line(row.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let rows = [
            ["a-very-long-channel-name-indeed".to_string(), "generic".into(), "-".into()],
            ["s".into(), "ü".into(), "https://x".into()],
        ];
        let text = super::table(["NAME", "KIND", "WEBHOOK"], &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "NAME                             KIND     WEBHOOK");
        assert_eq!(lines[1], "a-very-long-channel-name-indeed  generic  -");
        assert_eq!(lines[2], "s                                ü        https://x");
    }
}
