//! docs/protocol.md lists the supported APIs; this keeps it equal to
//! `protocol::api::SUPPORTED_APIS`, the table the broker advertises.

use std::path::Path;

use protocol::api::{SupportedApi, SHARE_GROUP_APIS, SUPPORTED_APIS};

#[test]
fn the_documented_table_matches_the_code() {
    compare("supported-apis", SUPPORTED_APIS);
}

#[test]
fn the_documented_share_group_table_matches_the_code() {
    compare("share-group-apis", SHARE_GROUP_APIS);
}

/// Compares the table between `<!-- {marker}:begin -->` and
/// `<!-- {marker}:end -->` in docs/protocol.md with `apis`.
fn compare(marker: &str, apis: &[SupportedApi]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md");
    let text = std::fs::read_to_string(&path).expect("docs/protocol.md");
    let start = text.find(&format!("<!-- {marker}:begin -->")).expect("begin marker");
    let end = text.find(&format!("<!-- {marker}:end -->")).expect("end marker");
    // Rows look like `| 18 | ApiVersions | 0–4 | notes |`.
    let documented: Vec<(i16, String, i16, i16)> = text[start..end]
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let key = cells.get(1)?.parse().ok()?;
            let (min, max) = cells.get(3)?.split_once('–')?;
            Some((key, cells[2].to_owned(), min.parse().ok()?, max.parse().ok()?))
        })
        .collect();
    let in_code: Vec<(i16, String, i16, i16)> = apis
        .iter()
        .map(|row| (row.api_key as i16, format!("{:?}", row.api_key), row.min_version, row.max_version))
        .collect();
    assert_eq!(documented, in_code, "docs/protocol.md ({marker}) and the code differ");
}
