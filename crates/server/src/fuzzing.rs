//! Entry points for the fuzz targets; not part of the API.

use serde::de::DeserializeOwned;
use serde::Serialize;

use peergos_api::*;

/// Whatever decodes (under the extension rule, so fields the type does
/// not know are dropped) re-encodes to a body that decodes strictly to
/// the same encoding: decoding is a projection, never a misreading.
fn round_trip<T: DeserializeOwned + Serialize>(data: &[u8]) {
    if let Ok(value) = crate::http::decode::<T>(data) {
        let again = match peergos_ipld::cbor::to_vec(&value) {
            Ok(again) => again,
            Err(e) => panic!("a decoded request does not re-encode: {e}"),
        };
        let strict: T = match peergos_ipld::cbor::from_slice(&again) {
            Ok(strict) => strict,
            Err(e) => panic!("a re-encoded request does not decode strictly: {e}"),
        };
        assert_eq!(
            peergos_ipld::cbor::to_vec(&strict).ok().as_deref(),
            Some(&again[..]),
            "a re-encoded request is not canonical"
        );
    }
}

/// Decodes untrusted bytes as every body the server reads and every
/// answer a client reads: whatever decodes re-encodes to the same
/// bytes, and turning a put into checked blocks never panics.
pub fn request(data: &[u8]) {
    round_trip::<PutHeader>(data);
    if let Ok(put) = decode_put(&bytes::Bytes::copy_from_slice(data)) {
        assert_eq!(encode_put(&put), data, "a put body does not re-encode");
    }
    round_trip::<GetRequest>(data);
    round_trip::<GetManyRequest>(data);
    round_trip::<ChampLookup>(data);
    round_trip::<TxRequest>(data);
    round_trip::<SignupRequest>(data);
    if let Ok(signup) = crate::http::decode::<SignupRequest>(data) {
        let _ = signup.chain.verify();
        let _ = signup.login.validate();
    }
    round_trip::<LoginRequest>(data);
    round_trip::<DataRequest>(data);
    round_trip::<ChangeRequest>(data);
    round_trip::<Info>(data);
    round_trip::<PkiAnswer>(data);
    round_trip::<Space>(data);
    round_trip::<ErrorBody>(data);
    round_trip::<FollowPost>(data);
    round_trip::<OwnerRequest>(data);
    round_trip::<Vec<PendingFollow>>(data);
    round_trip::<DeleteRequests>(data);
    round_trip::<CreateLink>(data);
    if let Ok(create) = crate::http::decode::<CreateLink>(data) {
        let _ = create.record.validate();
    }
    round_trip::<RevokeLink>(data);
    round_trip::<UpdateLink>(data);
    round_trip::<Vec<LinkStatus>>(data);
    round_trip::<OpenLink>(data);
    // What servers send each other over p2p.
    round_trip::<crate::peers::TunnelRequest>(data);
    round_trip::<crate::peers::TunnelResponse>(data);
    round_trip::<Vec<crate::peers::Want>>(data);
    let frame = bytes::Bytes::copy_from_slice(data);
    if let Ok(haves) = crate::peers::decode_answer(&frame) {
        assert_eq!(
            crate::peers::encode_answer(&haves),
            data,
            "an exchange answer does not re-encode"
        );
    }
    round_trip::<Option<peergos_pointers::SignedPointer>>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::peers::parse_home(text);
    }
}
