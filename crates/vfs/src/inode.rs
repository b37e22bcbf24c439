//! Inode numbers for paths, kept stable for the life of a mount.

use std::collections::HashMap;

/// The root directory's inode number.
pub const ROOT: u64 = 1;

struct Node {
    /// Its path in the mount (None once removed).
    path: Option<String>,
    /// Lookups the kernel holds (it forgets them with `forget`).
    lookups: u64,
}

/// The inode table: every path the kernel has been told about has one
/// number until the kernel forgets it; a rename keeps the number and
/// changes the path (of the whole subtree).
pub struct Inodes {
    nodes: HashMap<u64, Node>,
    by_path: HashMap<String, u64>,
    next: u64,
}

impl Default for Inodes {
    fn default() -> Self {
        let mut table = Inodes {
            nodes: HashMap::new(),
            by_path: HashMap::new(),
            next: ROOT + 1,
        };
        table.nodes.insert(
            ROOT,
            Node {
                path: Some("/".into()),
                lookups: 1,
            },
        );
        table.by_path.insert("/".into(), ROOT);
        table
    }
}

/// The path of `name` in the directory at `dir`.
pub fn child(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

impl Inodes {
    /// The path of an inode, if it still has one.
    pub fn path(&self, ino: u64) -> Option<String> {
        self.nodes.get(&ino).and_then(|n| n.path.clone())
    }

    /// The inode for `path`, made if new; `lookup` counts one kernel lookup.
    pub fn get_or_insert(&mut self, path: &str, lookup: bool) -> u64 {
        let ino = match self.by_path.get(path) {
            Some(&ino) => ino,
            None => {
                let ino = self.next;
                self.next += 1;
                self.nodes.insert(
                    ino,
                    Node {
                        path: Some(path.to_string()),
                        lookups: 0,
                    },
                );
                self.by_path.insert(path.to_string(), ino);
                ino
            }
        };
        if lookup {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.lookups += 1;
            }
        }
        ino
    }

    /// The kernel dropped `count` lookups of `ino`; an inode nobody holds
    /// is removed (unless `pinned`, for example by an open handle).
    pub fn forget(&mut self, ino: u64, count: u64, pinned: bool) {
        if ino == ROOT {
            return;
        }
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        node.lookups = node.lookups.saturating_sub(count);
        if node.lookups == 0 && !pinned {
            if let Some(node) = self.nodes.remove(&ino) {
                if let Some(path) = node.path {
                    if self.by_path.get(&path) == Some(&ino) {
                        self.by_path.remove(&path);
                    }
                }
            }
        }
    }

    /// The entry at `path` (and everything under it) is gone.
    pub fn remove(&mut self, path: &str) {
        let prefix = format!("{path}/");
        let gone: Vec<String> = self
            .by_path
            .keys()
            .filter(|p| *p == path || p.starts_with(&prefix))
            .cloned()
            .collect();
        for p in gone {
            if let Some(ino) = self.by_path.remove(&p) {
                if let Some(node) = self.nodes.get_mut(&ino) {
                    node.path = None;
                }
            }
        }
    }

    /// `from` (and its subtree) is now at `to`; whatever was at `to` is gone.
    pub fn rename(&mut self, from: &str, to: &str) {
        self.remove(to);
        let prefix = format!("{from}/");
        let moved: Vec<(String, u64)> = self
            .by_path
            .iter()
            .filter(|(p, _)| *p == from || p.starts_with(&prefix))
            .map(|(p, &ino)| (p.clone(), ino))
            .collect();
        for (old, ino) in moved {
            self.by_path.remove(&old);
            let new = format!("{to}{}", &old[from.len()..]);
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.path = Some(new.clone());
            }
            self.by_path.insert(new, ino);
        }
    }

    /// How many inodes are known (the root included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether only the root is known.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Lookup(u8),
        Rename(u8, u8),
        Remove(u8),
    }

    /// Paths over a small alphabet, nested up to three deep.
    fn path(i: u8) -> String {
        let names = ["a", "b", "c"];
        let mut out = String::new();
        let mut n = usize::from(i) % 39 + 1;
        while n > 0 {
            out.push('/');
            out.push_str(names[(n - 1) % 3]);
            n = (n - 1) / 3;
        }
        out
    }

    proptest! {
        /// Against a model (path -> number), every known number has the
        /// path the model says and numbers are never shared.
        #[test]
        fn the_table_matches_a_model(ops in proptest::collection::vec(
            prop_oneof![
                any::<u8>().prop_map(Op::Lookup),
                (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::Rename(a, b)),
                any::<u8>().prop_map(Op::Remove),
            ],
            0..60,
        )) {
            let mut table = Inodes::default();
            let mut model: HashMap<String, u64> = HashMap::new();
            for op in ops {
                match op {
                    Op::Lookup(i) => {
                        let p = path(i);
                        let ino = table.get_or_insert(&p, true);
                        if let Some(&known) = model.get(&p) {
                            prop_assert_eq!(ino, known);
                        }
                        model.insert(p, ino);
                    }
                    Op::Rename(a, b) => {
                        let (from, to) = (path(a), path(b));
                        if to.starts_with(&format!("{from}/")) || from == to {
                            continue;
                        }
                        table.rename(&from, &to);
                        let prefix = format!("{from}/");
                        let to_prefix = format!("{to}/");
                        model.retain(|p, _| *p != to && !p.starts_with(&to_prefix));
                        let moved: Vec<(String, u64)> = model
                            .iter()
                            .filter(|(p, _)| **p == from || p.starts_with(&prefix))
                            .map(|(p, i)| (p.clone(), *i))
                            .collect();
                        for (p, i) in moved {
                            model.remove(&p);
                            model.insert(format!("{to}{}", &p[from.len()..]), i);
                        }
                    }
                    Op::Remove(i) => {
                        let p = path(i);
                        table.remove(&p);
                        let prefix = format!("{p}/");
                        model.retain(|q, _| *q != p && !q.starts_with(&prefix));
                    }
                }
                for (p, ino) in &model {
                    prop_assert_eq!(table.path(*ino), Some(p.clone()));
                }
                let mut numbers: Vec<u64> = model.values().copied().collect();
                numbers.sort_unstable();
                numbers.dedup();
                prop_assert_eq!(numbers.len(), model.len());
            }
        }
    }

    #[test]
    fn renames_move_subtrees_and_keep_numbers() {
        let mut t = Inodes::default();
        let a = t.get_or_insert("/a", true);
        let b = t.get_or_insert("/a/b", true);
        let c = t.get_or_insert("/c", true);
        assert_eq!(t.get_or_insert("/a", true), a);
        t.rename("/a", "/c");
        assert_eq!(t.path(a).as_deref(), Some("/c"));
        assert_eq!(t.path(b).as_deref(), Some("/c/b"));
        assert_eq!(t.path(c), None, "the replaced entry has no path");
        assert_eq!(t.get_or_insert("/c/b", false), b);
        // A sibling whose name starts the same is not part of the subtree.
        let ab = t.get_or_insert("/cb", false);
        t.remove("/c");
        assert_eq!(t.path(ab).as_deref(), Some("/cb"));
        assert_eq!(t.path(b), None);
    }

    #[test]
    fn forgotten_inodes_go_unless_pinned() {
        let mut t = Inodes::default();
        let a = t.get_or_insert("/a", true);
        t.get_or_insert("/a", true);
        t.forget(a, 1, false);
        assert_eq!(t.path(a).as_deref(), Some("/a"));
        t.forget(a, 1, true);
        assert_eq!(t.path(a).as_deref(), Some("/a"), "pinned by a handle");
        t.forget(a, 0, false);
        assert_eq!(t.path(a), None);
        assert_ne!(t.get_or_insert("/a", false), a, "a new number after forget");
        t.forget(ROOT, 5, false);
        assert_eq!(t.path(ROOT).as_deref(), Some("/"));
        assert_eq!(child("/", "x"), "/x");
        assert_eq!(child("/x", "y"), "/x/y");
    }
}
