//! Random sequences of filesystem operations against an in-memory model
//! tree: after every step, every directory lists the same names and every
//! file holds the same bytes as the model.

use std::collections::BTreeMap;

use peergos_cryptree::Kind;
use peergos_testkit::cryptree::{memory_fs, read_all, MemoryFs};
use proptest::prelude::*;

/// The model: every path (without the leading "/") to a directory (None)
/// or a file's bytes.
type Model = BTreeMap<String, Option<Vec<u8>>>;

#[derive(Clone, Debug)]
enum Op {
    Mkdir(usize, u8),
    Write(usize, u8, Vec<u8>),
    WriteAt(usize, u16, Vec<u8>),
    Truncate(usize, u16),
    Append(usize, Vec<u8>),
    /// A cut, then writes (None: at the end), in one commit.
    Patch(usize, Option<u16>, Vec<(Option<u16>, Vec<u8>)>),
    Rename(usize, usize, u8),
    Copy(usize, usize, u8),
    Rm(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..5000);
    prop_oneof![
        (any::<usize>(), 0..6u8).prop_map(|(d, n)| Op::Mkdir(d, n)),
        (any::<usize>(), 0..6u8, bytes.clone()).prop_map(|(d, n, b)| Op::Write(d, n, b)),
        (any::<usize>(), any::<u16>(), bytes.clone()).prop_map(|(f, o, b)| Op::WriteAt(f, o, b)),
        (any::<usize>(), any::<u16>()).prop_map(|(f, s)| Op::Truncate(f, s)),
        (any::<usize>(), bytes.clone()).prop_map(|(f, b)| Op::Append(f, b)),
        (
            any::<usize>(),
            proptest::option::of(any::<u16>()),
            proptest::collection::vec((proptest::option::of(any::<u16>()), bytes), 0..4)
        )
            .prop_map(|(f, s, w)| Op::Patch(f, s, w)),
        (any::<usize>(), any::<usize>(), 0..6u8).prop_map(|(a, d, n)| Op::Rename(a, d, n)),
        (any::<usize>(), any::<usize>(), 0..6u8).prop_map(|(a, d, n)| Op::Copy(a, d, n)),
        any::<usize>().prop_map(Op::Rm),
    ]
}

fn dirs(model: &Model) -> Vec<String> {
    std::iter::once(String::new())
        .chain(
            model
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k.clone()),
        )
        .collect()
}

fn files(model: &Model) -> Vec<String> {
    model
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.clone())
        .collect()
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn pick(list: &[String], i: usize) -> Option<String> {
    (!list.is_empty()).then(|| list[i % list.len()].clone())
}

/// Applies `op` to the model and the filesystem; both must agree on
/// whether it is allowed.
async fn apply(fs: &MemoryFs, model: &mut Model, op: &Op) {
    let name = |n: u8| format!("n{n}");
    match op {
        Op::Mkdir(d, n) => {
            let dir = pick(&dirs(model), *d).unwrap();
            let path = join(&dir, &name(*n));
            let result = fs.mkdir(&format!("/{path}")).await;
            match model.entry(path) {
                std::collections::btree_map::Entry::Occupied(e) => {
                    assert!(result.is_err(), "mkdir over an existing {}", e.key())
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    result.unwrap();
                    e.insert(None);
                }
            }
        }
        Op::Write(d, n, bytes) => {
            let dir = pick(&dirs(model), *d).unwrap();
            let path = join(&dir, &name(*n));
            let result = fs.write_file(&format!("/{path}"), bytes).await;
            if let Some(None) = model.get(&path) {
                assert!(result.is_err(), "upload over directory {path}");
            } else {
                result.unwrap();
                model.insert(path, Some(bytes.clone()));
            }
        }
        Op::WriteAt(f, offset, bytes) => {
            let Some(path) = pick(&files(model), *f) else {
                return;
            };
            fs.write_at(&format!("/{path}"), u64::from(*offset), bytes)
                .await
                .unwrap();
            let data = model.get_mut(&path).unwrap().as_mut().unwrap();
            let end = usize::from(*offset) + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[usize::from(*offset)..end].copy_from_slice(bytes);
        }
        Op::Truncate(f, size) => {
            let Some(path) = pick(&files(model), *f) else {
                return;
            };
            fs.truncate(&format!("/{path}"), u64::from(*size))
                .await
                .unwrap();
            let data = model.get_mut(&path).unwrap().as_mut().unwrap();
            data.resize(usize::from(*size), 0);
        }
        Op::Patch(f, size, writes) => {
            let Some(path) = pick(&files(model), *f) else {
                return;
            };
            let patch = peergos_cryptree::Patch {
                size: size.map(u64::from),
                writes: writes
                    .iter()
                    .map(|(at, b)| (at.map(u64::from), bytes::Bytes::from(b.clone())))
                    .collect(),
                modified: None,
            };
            fs.patch(&format!("/{path}"), &patch).await.unwrap();
            let data = model.get_mut(&path).unwrap().as_mut().unwrap();
            if let Some(size) = size {
                data.resize(usize::from(*size), 0);
            }
            for (at, bytes) in writes {
                let at = at.map_or(data.len(), usize::from);
                let end = at + bytes.len();
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[at..end].copy_from_slice(bytes);
            }
        }
        Op::Append(f, bytes) => {
            let Some(path) = pick(&files(model), *f) else {
                return;
            };
            fs.append(&format!("/{path}"), bytes).await.unwrap();
            model
                .get_mut(&path)
                .unwrap()
                .as_mut()
                .unwrap()
                .extend_from_slice(bytes);
        }
        Op::Rename(a, d, n) | Op::Copy(a, d, n) => {
            let all: Vec<String> = model.keys().cloned().collect();
            let Some(from) = pick(&all, *a) else { return };
            let dir = pick(&dirs(model), *d).unwrap();
            let to = join(&dir, &name(*n));
            let copying = matches!(op, Op::Copy(..));
            let into_itself = to == from || to.starts_with(&format!("{from}/"));
            let result = if copying {
                fs.copy(&format!("/{from}"), &format!("/{to}")).await
            } else {
                fs.rename(&format!("/{from}"), &format!("/{to}")).await
            };
            let src_is_dir = model[&from].is_none();
            let allowed = if to == from {
                !copying
            } else if into_itself {
                false
            } else {
                match model.get(&to) {
                    None => true,
                    Some(_) if copying => false,
                    Some(Some(_)) => !src_is_dir,
                    Some(None) => {
                        src_is_dir && !model.keys().any(|k| k.starts_with(&format!("{to}/")))
                    }
                }
            };
            assert_eq!(result.is_ok(), allowed, "{op:?} {from} -> {to}: {result:?}");
            if !allowed || to == from {
                return;
            }
            // Replace the target, then carry the subtree over.
            let prefix = format!("{to}/");
            model.retain(|k, _| k != &to && !k.starts_with(&prefix));
            let moved: Vec<(String, Option<Vec<u8>>)> = model
                .iter()
                .filter(|(k, _)| **k == from || k.starts_with(&format!("{from}/")))
                .map(|(k, v)| (format!("{to}{}", &k[from.len()..]), v.clone()))
                .collect();
            if !copying {
                model.retain(|k, _| *k != from && !k.starts_with(&format!("{from}/")));
            }
            model.extend(moved);
        }
        Op::Rm(a) => {
            let all: Vec<String> = model.keys().cloned().collect();
            let Some(path) = pick(&all, *a) else { return };
            fs.rm(&format!("/{path}")).await.unwrap();
            model.retain(|k, _| *k != path && !k.starts_with(&format!("{path}/")));
        }
    }
}

async fn check(fs: &MemoryFs, model: &Model) {
    for dir in dirs(model) {
        let listed: Vec<(String, Kind)> = fs
            .ls(&format!("/{dir}"))
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect();
        let expected: Vec<(String, Kind)> = model
            .iter()
            .filter_map(|(k, v)| {
                let rest = if dir.is_empty() {
                    k.as_str()
                } else {
                    k.strip_prefix(&format!("{dir}/"))?
                };
                (!rest.contains('/')).then(|| {
                    let kind = if v.is_some() { Kind::File } else { Kind::Dir };
                    (rest.to_string(), kind)
                })
            })
            .collect();
        assert_eq!(listed, expected, "listing of /{dir}");
    }
    for (path, data) in model {
        if let Some(data) = data {
            assert!(
                read_all(fs, &format!("/{path}")).await == *data,
                "content of /{path}"
            );
            assert_eq!(
                fs.stat(&format!("/{path}")).await.unwrap().size,
                data.len() as u64
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn filesystem_matches_a_model_tree(ops in proptest::collection::vec(op(), 1..30)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        runtime.block_on(async {
            let fs = memory_fs().await;
            let mut model = Model::new();
            for op in &ops {
                apply(&fs, &mut model, op).await;
                check(&fs, &model).await;
            }
        });
    }
}
