//! Replays the data-file vectors in `tests/vectors/cbor.txt`.

use peergos_ipld::{cbor, Error};

#[test]
fn cbor_vectors() {
    let text = include_str!("../vectors/cbor.txt");
    let mut checked = 0;
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let verdict = parts.next().unwrap();
        let bytes = hex::decode(parts.next().unwrap_or("")).unwrap();
        let result = cbor::decode_value(&bytes);
        let what = format!("line {}: {verdict} {}", number + 1, hex::encode(&bytes));
        match (verdict, &result) {
            ("ok", Ok(value)) => {
                assert_eq!(cbor::encode_value(value).unwrap(), bytes, "{what}")
            }
            ("noncanonical", Err(Error::NonCanonical { .. }))
            | ("malformed", Err(Error::MalformedCbor { .. }))
            | ("invalidcid", Err(Error::InvalidCid { .. }))
            | ("toodeep", Err(Error::TooDeep { .. })) => {}
            _ => panic!("{what}: got {result:?}"),
        }
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} vectors read");
}
