//! Write subspaces (a subtree under a writer key of its own) and key
//! rotation (revoking old capabilities).

use std::sync::Arc;

use peergos_blockstore::{BlockStore, MemoryStore};
use peergos_cryptree::{Error, Filesystem, WriterData, WriterOwnership};
use peergos_keys::{PublicKeyHash, SigningKeyPair};
use peergos_pointers::{MemoryPointerStore, PointerStore};
use peergos_testkit::cryptree::{new_fs, read_all};

type Fs = Filesystem<MemoryStore, MemoryPointerStore>;

struct Space {
    blocks: Arc<MemoryStore>,
    pointers: Arc<MemoryPointerStore>,
    owner: PublicKeyHash,
    fs: Fs,
}

/// A space whose pointer store accepts sub-writers the owner's
/// `WriterData` lists as owned, as a server does.
async fn space() -> Space {
    let blocks = Arc::new(MemoryStore::new());
    let ownership = Arc::new(WriterOwnership::new(Arc::clone(&blocks)));
    let pointers = Arc::new(MemoryPointerStore::new(ownership.clone()));
    let as_dyn: Arc<dyn PointerStore> = pointers.clone();
    ownership.attach(&as_dyn);
    let fs = new_fs(Arc::clone(&blocks), Arc::clone(&pointers), "root").await;
    let owner = fs.root().owner;
    Space {
        blocks,
        pointers,
        owner,
        fs,
    }
}

impl Space {
    fn open(&self, cap: peergos_cryptree::AbsoluteCapability) -> Fs {
        Filesystem::open(Arc::clone(&self.blocks), Arc::clone(&self.pointers), cap)
    }

    async fn owned(&self, writer: &PublicKeyHash) -> Vec<PublicKeyHash> {
        let signed = self
            .pointers
            .get(&self.owner, writer)
            .await
            .unwrap()
            .unwrap();
        let cid = signed.update.current.unwrap();
        let bytes = self.blocks.get_trusted(&cid).await.unwrap().unwrap();
        WriterData::from_bytes(&bytes)
            .unwrap()
            .owned
            .into_iter()
            .collect()
    }

    async fn sequence(&self, writer: &PublicKeyHash) -> u64 {
        self.pointers
            .get(&self.owner, writer)
            .await
            .unwrap()
            .map_or(0, |s| s.update.sequence)
    }
}

fn names(entries: &[peergos_cryptree::Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.name.as_str()).collect()
}

#[tokio::test]
async fn a_write_subspace_is_signed_by_its_own_key_and_stays_open_to_its_parent() {
    let s = space().await;
    let root_writer = s.fs.root().writer;
    s.fs.mkdir("/shared").await.unwrap();
    s.fs.write_file("/shared/a", b"alpha").await.unwrap();
    s.fs.mkdir("/shared/sub").await.unwrap();
    s.fs.write_file("/shared/sub/b", &vec![7u8; 6 << 20])
        .await
        .unwrap();
    s.fs.write_file("/private", b"not shared").await.unwrap();

    let cap = s.fs.grant_write("/shared").await.unwrap();
    assert_ne!(cap.writer, root_writer);
    assert!(cap.is_writable());
    assert_eq!(s.owned(&root_writer).await, vec![cap.writer]);
    // Granting again is a no-op that returns the same subspace.
    assert_eq!(
        s.fs.grant_write("/shared").await.unwrap().writer,
        cap.writer
    );

    // The grantee writes with the subspace key only.
    let friend = s.open(cap.clone());
    assert_eq!(names(&friend.ls("/").await.unwrap()), ["a", "sub"]);
    assert_eq!(read_all(&friend, "/sub/b").await, vec![7u8; 6 << 20]);
    let (root_before, sub_before) = (
        s.sequence(&root_writer).await,
        s.sequence(&cap.writer).await,
    );
    friend.write_file("/from-friend", b"hello").await.unwrap();
    friend.mkdir("/sub/deeper").await.unwrap();
    assert_eq!(s.sequence(&root_writer).await, root_before);
    assert!(s.sequence(&cap.writer).await > sub_before);

    // The parent still reads and writes everything.
    assert_eq!(read_all(&s.fs, "/shared/from-friend").await, b"hello");
    s.fs.write_file("/shared/sub/c", b"owner").await.unwrap();
    assert_eq!(read_all(&friend, "/sub/c").await, b"owner");
    assert_eq!(read_all(&s.fs, "/private").await, b"not shared");
    // Renames inside the subspace work; moves across writers are refused.
    s.fs.rename("/shared/a", "/shared/a2").await.unwrap();
    assert!(matches!(
        s.fs.rename("/private", "/shared/private").await,
        Err(Error::CrossWriter { .. })
    ));

    // Deleting the subspace drops its key from the owner's owned keys.
    s.fs.rm("/shared").await.unwrap();
    assert!(s.owned(&root_writer).await.is_empty());
    assert!(friend.write_file("/again", b"x").await.is_err());
}

#[tokio::test]
async fn a_server_refuses_a_sub_writer_it_is_not_told_about() {
    // With the owner-only rule, the sub-writer's first commit is refused:
    // the check that the owner owns the key is the server's.
    let keys = SigningKeyPair::random();
    let fs = Filesystem::create(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryPointerStore::default()),
        PublicKeyHash::of(&keys.public()),
        &keys,
        "root",
    )
    .await
    .unwrap();
    fs.mkdir("/d").await.unwrap();
    let err = fs.grant_write("/d").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Pointer(peergos_pointers::Error::NotOwned { .. })
        ),
        "{err}"
    );
    // Nothing changed for the owner.
    fs.write_file("/d/x", b"still fine").await.unwrap();
}

#[tokio::test]
async fn rotation_locks_out_old_capabilities_and_keeps_the_owner_in() {
    let s = space().await;
    s.fs.mkdir("/docs").await.unwrap();
    s.fs.write_file("/docs/a", &vec![1u8; 6 << 20])
        .await
        .unwrap();
    s.fs.mkdir("/docs/sub").await.unwrap();
    s.fs.write_file("/docs/sub/b", b"bravo").await.unwrap();
    let old_dir = s.fs.capability("/docs").await.unwrap().read_only();
    let old_file = s.fs.capability("/docs/a").await.unwrap().read_only();
    let before = s.open(old_dir.clone());
    assert_eq!(names(&before.ls("/").await.unwrap()), ["a", "sub"]);

    let new_cap = s.fs.rotate("/docs").await.unwrap();
    assert_ne!(new_cap.label, old_dir.label);
    assert_ne!(new_cap.read, old_dir.read);
    assert_ne!(new_cap.bat, old_dir.bat);
    s.fs.write_file("/docs/after", b"new secret").await.unwrap();
    s.fs.write_at("/docs/sub/b", 0, b"B").await.unwrap();

    // Old capabilities find nothing.
    assert!(matches!(before.ls("/").await, Err(Error::NotFound { .. })));
    let old_file_fs = s.open(old_file);
    assert!(matches!(
        old_file_fs.stat("/").await,
        Err(Error::NotFound { .. })
    ));

    // The owner and the new capability see everything.
    assert_eq!(read_all(&s.fs, "/docs/a").await, vec![1u8; 6 << 20]);
    assert_eq!(read_all(&s.fs, "/docs/sub/b").await, b"Bravo");
    let after = s.open(new_cap.read_only());
    assert_eq!(names(&after.ls("/").await.unwrap()), ["a", "after", "sub"]);
    assert_eq!(read_all(&after, "/after").await, b"new secret");
}

#[tokio::test]
async fn rotating_a_subspace_revokes_the_old_writer_key() {
    let s = space().await;
    let root_writer = s.fs.root().writer;
    s.fs.mkdir("/team").await.unwrap();
    s.fs.write_file("/team/plan", b"v1").await.unwrap();
    let old = s.fs.grant_write("/team").await.unwrap();
    let old_holder = s.open(old.clone());
    old_holder
        .write_file("/note", b"from the old holder")
        .await
        .unwrap();

    let new = s.fs.rotate("/team").await.unwrap();
    assert_ne!(new.writer, old.writer);
    assert_eq!(s.owned(&root_writer).await, vec![new.writer]);
    // The old holder can neither read nor write any more.
    assert!(old_holder.ls("/").await.is_err());
    assert!(old_holder.write_file("/more", b"x").await.is_err());
    // The owner and the new holder can.
    assert_eq!(read_all(&s.fs, "/team/note").await, b"from the old holder");
    let new_holder = s.open(new);
    new_holder.write_file("/fresh", b"ok").await.unwrap();
    assert_eq!(read_all(&s.fs, "/team/fresh").await, b"ok");
}
