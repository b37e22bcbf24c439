//! What a file or directory says about itself ([`Properties`]): encrypted
//! inside its first chunk's parent part, never seen by a server.
//!
//! Properties follow the extension rule (PROTOCOL.md, "Formats that
//! grow"): optional fields are left out when empty; a field this build
//! does not know is kept as it came ([`Properties::unknown`]) and written
//! back unchanged when the properties are rewritten (a rename, a write),
//! so an older client never strips what a newer one added; a feature that
//! an older reader must not ignore (a symbolic link) raises the version
//! `"v"`, and a reader refuses a version newer than it knows with an
//! "upgrade" error.

use std::collections::BTreeMap;

use peergos_ipld::cbor::Value;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::{Error, Result};

/// The newest properties version this build reads. Version 2 adds
/// symbolic links ([`Properties::symlink`]).
pub const PROPERTIES_VERSION: u64 = 1;

/// The largest thumbnail kept in the properties.
pub const MAX_THUMBNAIL: usize = 64 << 10;

/// The largest symbolic-link target.
pub const MAX_SYMLINK_TARGET: usize = 4096;

/// What a directory or file says about itself.
///
/// CBOR: `{"h": bool, "m": int, "n": text, "s": uint, "t": text, "x":
/// bytes(32), ?"v": uint, ?"p": uint, ?"o": {"u": uint, "g": uint}, ?"l":
/// text, ?"i": bytes, ?"c": bytes(32), ...}`: the six fields every
/// version has, then optional ones (absent when empty), then any field
/// from a newer writer.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Properties {
    /// The name (1 to 255 bytes, no `/`, not `.` or `..`).
    #[serde(rename = "n")]
    pub name: String,
    /// File size in bytes (0 for directories).
    #[serde(rename = "s")]
    pub size: u64,
    /// Last modification, milliseconds since the Unix epoch.
    #[serde(rename = "m")]
    pub modified: i64,
    /// MIME type, or empty if unknown.
    #[serde(rename = "t")]
    pub mime: String,
    /// Hidden from ordinary listings.
    #[serde(rename = "h")]
    pub hidden: bool,
    /// Derives the labels and tokens of chunks after the first.
    #[serde(rename = "x", with = "serde_bytes")]
    pub stream: [u8; 32],
    /// The properties version, when above 1 (left out for 1).
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// POSIX permission bits (`0o7777` at most), when set.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// The owning user and group ids, when set (meaningful on the device
    /// that set them).
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// A symbolic link's target; a node with one is a link, not a file,
    /// and needs version 2.
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    pub symlink: Option<String>,
    /// A small preview image (WebP, JPEG or PNG bytes), at most
    /// [`MAX_THUMBNAIL`].
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<ByteBuf>,
    /// BLAKE3 of the file's plaintext, when the writer computed it (sync
    /// compares contents without reading them).
    #[serde(
        rename = "c",
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_bytes"
    )]
    pub content_hash: Option<[u8; 32]>,
    /// Fields from a newer writer that this build does not know, kept to
    /// be written back as they came.
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// User and group ids.
///
/// CBOR: `{"g": uint, "u": uint}`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Owner {
    /// User id.
    #[serde(rename = "u")]
    pub uid: u32,
    /// Group id.
    #[serde(rename = "g")]
    pub gid: u32,
}

/// Fields a newer writer added, by name, as they were decoded.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Unknown(pub BTreeMap<String, Value>);

// DAG-CBOR has no floats, so every decoded value equals itself.
impl Eq for Unknown {}

impl Properties {
    /// The version these properties carry (1 when `"v"` is left out).
    pub fn format_version(&self) -> u64 {
        self.version.unwrap_or(1)
    }

    /// Checks what decoding cannot: the version is one this build reads,
    /// and each optional field is within its bounds.
    pub fn check(&self) -> Result<()> {
        let bad = |reason: &'static str| Err(Error::MalformedNode { reason });
        if self.version == Some(1) {
            return bad("properties version 1 is written by leaving \"v\" out");
        }
        peergos_ipld::check_version(
            "file's properties",
            self.format_version(),
            PROPERTIES_VERSION,
        )?;
        if self.mode.is_some_and(|mode| mode > 0o7777) {
            return bad("permission bits above 0o7777");
        }
        if let Some(target) = &self.symlink {
            if self.format_version() < 2 {
                return bad("a symbolic link in properties below version 2");
            }
            if target.is_empty() || target.len() > MAX_SYMLINK_TARGET || target.contains('\0') {
                return bad("a symbolic link target of 1 to 4096 bytes without NUL");
            }
        }
        if self
            .thumbnail
            .as_ref()
            .is_some_and(|t| t.is_empty() || t.len() > MAX_THUMBNAIL)
        {
            return bad("a thumbnail of 1 byte to 64 KiB");
        }
        if self.unknown.0.values().any(|v| *v == Value::Null) {
            return bad("an added field that is null (added fields are left out when empty)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peergos_ipld::cbor;

    fn props() -> Properties {
        Properties {
            name: "notes.txt".into(),
            size: 12,
            modified: 1_700_000_000_000,
            mime: "text/plain".into(),
            hidden: false,
            stream: [7; 32],
            ..Properties::default()
        }
    }

    #[test]
    fn the_six_fields_encode_as_before() {
        // The encoding every release so far wrote: six fields, nothing
        // else; the optional ones add nothing when empty.
        #[derive(Serialize)]
        struct Before<'a> {
            h: bool,
            m: i64,
            n: &'a str,
            s: u64,
            t: &'a str,
            #[serde(with = "serde_bytes")]
            x: [u8; 32],
        }
        let before = cbor::to_vec(&Before {
            h: false,
            m: 1_700_000_000_000,
            n: "notes.txt",
            s: 12,
            t: "text/plain",
            x: [7; 32],
        })
        .unwrap();
        assert_eq!(cbor::to_vec(&props()).unwrap(), before);
        let read: Properties = cbor::from_slice(&before).unwrap();
        assert_eq!(read, props());
        read.check().unwrap();
    }

    #[test]
    fn unknown_fields_survive_a_rewrite() {
        let mut value = cbor::to_value(&props()).unwrap();
        if let Value::Map(entries) = &mut value {
            entries.push((
                Value::Text("zz".into()),
                Value::Text("from the future".into()),
            ));
            entries.push((
                Value::Text("q2".into()),
                Value::Map(vec![(Value::Text("a".into()), Value::Integer(1.into()))]),
            ));
        }
        let bytes = cbor::encode_value(&value).unwrap();
        let mut read: Properties = cbor::from_slice(&bytes).unwrap();
        read.check().unwrap();
        assert_eq!(read.unknown.0.len(), 2);
        // A rename by this build keeps them.
        read.name = "renamed.txt".into();
        let written = cbor::to_vec(&read).unwrap();
        let again: Properties = cbor::from_slice(&written).unwrap();
        assert_eq!(again.unknown, read.unknown);
        assert_eq!(again.name, "renamed.txt");
    }

    #[test]
    fn every_optional_field_round_trips() {
        let full = Properties {
            mode: Some(0o640),
            owner: Some(Owner {
                uid: 1000,
                gid: 100,
            }),
            thumbnail: Some(ByteBuf::from(vec![0xff, 0xd8, 0xff])),
            content_hash: Some([9; 32]),
            ..props()
        };
        let bytes = cbor::to_vec(&full).unwrap();
        let read: Properties = cbor::from_slice(&bytes).unwrap();
        assert_eq!(read, full);
        read.check().unwrap();
    }

    #[test]
    fn a_newer_version_or_a_bad_field_is_refused_clearly() {
        let link = Properties {
            version: Some(2),
            symlink: Some("../target".into()),
            ..props()
        };
        let e = link.check().unwrap_err();
        assert!(e.to_string().contains("newer version of Peergos"), "{e}");
        let early_link = Properties {
            symlink: Some("x".into()),
            ..props()
        };
        assert!(early_link.check().is_err());
        let v1 = Properties {
            version: Some(1),
            ..props()
        };
        assert!(v1.check().is_err(), "version 1 has one encoding");
        let mode = Properties {
            mode: Some(0o10000),
            ..props()
        };
        assert!(mode.check().is_err());
        let thumb = Properties {
            thumbnail: Some(ByteBuf::from(vec![0; MAX_THUMBNAIL + 1])),
            ..props()
        };
        assert!(thumb.check().is_err());
        let mut null = props();
        null.unknown.0.insert("zz".into(), Value::Null);
        assert!(null.check().is_err());
    }
}
