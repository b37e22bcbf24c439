//! `peergos_core::transfer` against an in-process server: a folder of
//! small and large files goes up (small ones batched), a second upload
//! sends nothing, a recursive download gives back the same tree, and
//! progress adds up to what moved.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use peergos_core::transfer::{self, Progress};
use peergos_core::{NetworkAccess, UserContext};
use peergos_server::{Config, Server};
use peergos_testkit::cryptree::data;

#[derive(Default)]
struct Counted {
    total: AtomicU64,
    moved: AtomicU64,
}

impl Progress for Counted {
    fn total(&self, bytes: u64) {
        self.total.fetch_add(bytes, Ordering::SeqCst);
    }
    fn advance(&self, bytes: u64) {
        self.moved.fetch_add(bytes, Ordering::SeqCst);
    }
}

fn tree(root: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(root).unwrap().display().to_string();
                out.push((relative, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_goes_up_once_and_comes_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(Config::new(dir.path().join("server")))
        .await
        .unwrap();
    let net: Arc<dyn NetworkAccess> = server;
    let alice = UserContext::signup(net, "alice", "pw", None).await.unwrap();
    let local = dir.path().join("photos");
    std::fs::create_dir_all(local.join("2024/summer")).unwrap();
    std::fs::create_dir_all(local.join("empty")).unwrap();
    for i in 0..30u8 {
        std::fs::write(
            local.join(format!("2024/small-{i}.txt")),
            data(i, 100 + usize::from(i) * 37),
        )
        .unwrap();
    }
    std::fs::write(
        local.join("2024/summer/large.bin"),
        data(99, (6 << 20) + 123),
    )
    .unwrap();
    std::fs::write(local.join("top.txt"), b"top").unwrap();
    let fs = alice.fs_arc();

    let progress = Arc::new(Counted::default());
    let first = transfer::upload(&fs, &local, "/", progress.clone())
        .await
        .unwrap();
    assert_eq!((first.files, first.skipped), (32, 0));
    let expected_bytes: u64 = tree(&local).iter().map(|(_, d)| d.len() as u64).sum();
    assert_eq!(first.bytes, expected_bytes);
    assert_eq!(progress.total.load(Ordering::SeqCst), expected_bytes);
    assert_eq!(progress.moved.load(Ordering::SeqCst), expected_bytes);

    // Nothing changed: nothing is sent.
    let again = transfer::upload(&fs, &local, "/", Arc::new(transfer::Quiet))
        .await
        .unwrap();
    assert_eq!((again.files, again.skipped), (0, 32));

    let back = dir.path().join("back");
    let down = transfer::download(&fs, "/photos", &back, true, Arc::new(transfer::Quiet))
        .await
        .unwrap();
    assert_eq!(down.files, 32);
    assert_eq!(tree(&back), tree(&local));
    assert!(back.join("empty").is_dir());

    // A folder is not a file.
    let e = transfer::download(&fs, "/photos", &back, false, Arc::new(transfer::Quiet))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("is a directory"), "{e}");
}
