//! Test networks made of Linux network namespaces, for scenarios that must
//! cross a real NAT: an "internet" (one bridge) that this process is on,
//! and homes, each a host behind its own router that masquerades for it.
//!
//! ```text
//!   this namespace 10.213.1.1 ──┐
//!                               ├── internet (a bridge)
//!   router 1: WAN 10.213.1.2 ───┤           router 2: WAN 10.213.1.3 ── ...
//!      LAN 10.213.2.1                          LAN 10.213.3.1
//!      home 1: 10.213.2.2                      home 2: 10.213.3.2
//! ```
//!
//! A router behaves like a home router with no port forwards: it forwards
//! what its home sends out, lets in only replies to that, and drops
//! anything else silently (no RST, no ICMP). Nothing on the internet can
//! open a connection to a home. Each home also has a private link to this
//! namespace (its "management" address), which stands for the owner's own
//! computer on the home LAN: the test reaches a home server's HTTP API
//! there, never its p2p port.
//!
//! Building a lab needs root, `ip` (iproute2) and `nft` (nftables), and a
//! kernel that allows network namespaces; [`Lab::build`] says which is
//! missing. Everything is removed when the [`Lab`] is dropped.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

/// Labs share their addresses, so the labs of one process take turns.
static TURN: Mutex<()> = Mutex::new(());

/// The prefix of every namespace and link a lab makes.
const PREFIX: &str = "pg-";

/// How many homes a lab can hold (their LANs are 10.213.2.0/24 to
/// 10.213.8.0/24).
pub const MAX_HOMES: usize = 7;

/// How a router maps its home's connections onto its WAN address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// Keeps the home's source port where it can (Linux masquerade's
    /// default, and most home routers'): two homes that dial each other
    /// at the same moment can punch a hole (DCUtR).
    PortPreserving,
    /// A fresh random port for every connection (a "symmetric" NAT, as
    /// some carrier-grade NATs do): no hole can be punched, so a relay
    /// must carry everything between two homes.
    Symmetric,
}

/// This namespace's address on the lab's internet.
pub const PUBLIC_IP: &str = "10.213.1.1";

/// One home: a host namespace behind a router namespace.
pub struct Home {
    /// The home host's namespace (for `ip netns exec`).
    pub ns: String,
    /// The home host's LAN address, behind the router.
    pub lan_ip: String,
    /// The home host's address on its private link to this namespace.
    pub management_ip: String,
    /// The router's address on the internet (what others see the home as).
    pub wan_ip: String,
    router: String,
}

/// A built lab; removed when dropped.
pub struct Lab {
    internet: String,
    homes: Vec<Home>,
    /// Links and routes made in this namespace, to remove.
    links: Vec<String>,
    routes: Vec<String>,
    /// Held until the lab is taken apart (dropped after `drop` ran).
    _turn: MutexGuard<'static, ()>,
}

/// Runs `program args`, feeding `stdin`; says what failed.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let shown = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("`{shown}`: {e}"))?;
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.unwrap_or("").as_bytes())
            .map_err(|e| format!("`{shown}`: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("`{shown}`: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`{shown}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Removes what a lab of an earlier process left behind when it was
/// killed before taking its lab apart: its addresses would clash.
fn sweep() {
    let names = |listing: Result<String, String>| -> Vec<String> {
        listing
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|w| w.trim_end_matches(':').split('@').next())
            .filter(|w| w.starts_with(PREFIX))
            .map(str::to_string)
            .collect()
    };
    for ns in names(run("ip", &["netns", "list"], None)) {
        let _ = ip(&format!("netns del {ns}"));
    }
    for link in names(run("ip", &["-o", "link", "show"], None)) {
        let _ = ip(&format!("link del {link}"));
    }
    for lan in 2..MAX_HOMES + 2 {
        let _ = ip(&format!("route del unreachable 10.213.{lan}.0/24"));
    }
}

/// `ip` with its arguments written as one line.
fn ip(args: &str) -> Result<(), String> {
    run("ip", &args.split_whitespace().collect::<Vec<_>>(), None).map(|_| ())
}

/// `nft -f -` in namespace `ns`.
fn nft(ns: &str, rules: &str) -> Result<String, String> {
    run("ip", &["netns", "exec", ns, "nft", "-f", "-"], Some(rules))
}

/// The router's rules: masquerade out of `wan`, forward only what the
/// home started, answer nothing from the internet, and count the packets
/// let in from other homes (not from this namespace, [`PUBLIC_IP`]).
fn router_rules(nat: Nat) -> String {
    let mapping = match nat {
        Nat::PortPreserving => "masquerade",
        Nat::Symmetric => "masquerade fully-random",
    };
    format!(
        "table ip nat {{
  chain post {{ type nat hook postrouting priority srcnat; oifname \"wan\" {mapping}; }}
}}
table ip filter {{
  counter from_homes {{ }}
  chain input {{
    type filter hook input priority filter; policy drop;
    iifname {{ \"lo\", \"lan\" }} accept
    ct state established,related accept
  }}
  chain forward {{
    type filter hook forward priority filter; policy drop;
    iifname \"wan\" oifname \"lan\" ip saddr != {PUBLIC_IP} counter name from_homes
    ct state established,related accept
    iifname \"lan\" oifname \"wan\" accept
  }}
}}
"
    )
}

impl Lab {
    /// Builds an internet with `homes` homes behind routers doing `nat`,
    /// or says why it cannot (not root, no `ip` or `nft`, no namespaces).
    pub fn build(homes: usize, nat: Nat) -> Result<Lab, String> {
        // Home i's LAN is 10.213.(i + 2).0/24, below the management
        // links' 10.213.9.0/24.
        if homes > MAX_HOMES {
            return Err(format!("a lab has at most {MAX_HOMES} homes, not {homes}"));
        }
        let turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
        sweep();
        let id = std::process::id() % 100_000;
        let mut lab = Lab {
            internet: format!("{PREFIX}inet{id}"),
            homes: Vec::new(),
            links: Vec::new(),
            routes: Vec::new(),
            _turn: turn,
        };
        // Taken apart by Drop from here on, even if a step fails.
        let net = lab.internet.clone();
        ip(&format!("netns add {net}"))?;
        ip(&format!("-n {net} link add br0 type bridge"))?;
        ip(&format!("-n {net} link set br0 up"))?;
        let uplink = format!("{PREFIX}net{id}");
        ip(&format!(
            "link add {uplink} type veth peer name up0 netns {net}"
        ))?;
        lab.links.push(uplink.clone());
        ip(&format!("addr add {PUBLIC_IP}/24 dev {uplink}"))?;
        ip(&format!("link set {uplink} up"))?;
        ip(&format!("-n {net} link set up0 master br0 up"))?;
        for i in 0..homes {
            let home = Home {
                ns: format!("{PREFIX}home{}-{id}", i + 1),
                router: format!("{PREFIX}router{}-{id}", i + 1),
                lan_ip: format!("10.213.{}.2", i + 2),
                management_ip: format!("10.213.9.{}", 4 * i + 2),
                wan_ip: format!("10.213.1.{}", i + 2),
            };
            let (h, r) = (home.ns.clone(), home.router.clone());
            lab.homes.push(home);
            let lan = format!("10.213.{}", i + 2);
            let home = &lab.homes[i];
            ip(&format!("netns add {r}"))?;
            ip(&format!("netns add {h}"))?;
            // The router's WAN port on the internet's bridge.
            ip(&format!(
                "-n {net} link add up{} type veth peer name wan netns {r}",
                i + 1
            ))?;
            ip(&format!("-n {net} link set up{} master br0 up", i + 1))?;
            ip(&format!("-n {r} addr add {}/24 dev wan", home.wan_ip))?;
            ip(&format!("-n {r} link set wan up"))?;
            ip(&format!("-n {r} link set lo up"))?;
            // The home LAN.
            ip(&format!(
                "-n {r} link add lan type veth peer name eth0 netns {h}"
            ))?;
            ip(&format!("-n {r} addr add {lan}.1/24 dev lan"))?;
            ip(&format!("-n {r} link set lan up"))?;
            ip(&format!("-n {h} addr add {}/24 dev eth0", home.lan_ip))?;
            ip(&format!("-n {h} link set eth0 up"))?;
            ip(&format!("-n {h} link set lo up"))?;
            ip(&format!("-n {h} route add default via {lan}.1"))?;
            // The owner's computer on the LAN: a link to this namespace.
            let link = format!("{PREFIX}mgmt{}-{id}", i + 1);
            ip(&format!(
                "link add {link} type veth peer name mgmt netns {h}"
            ))?;
            lab.links.push(link.clone());
            ip(&format!("addr add 10.213.9.{}/30 dev {link}", 4 * i + 1))?;
            ip(&format!("link set {link} up"))?;
            ip(&format!(
                "-n {h} addr add {}/30 dev mgmt",
                home.management_ip
            ))?;
            ip(&format!("-n {h} link set mgmt up"))?;
            // Nothing here routes to the LAN (not even a default route
            // out of this machine), so a dial to it fails at once.
            let route = format!("unreachable {lan}.0/24");
            ip(&format!("route add {route}"))?;
            lab.routes.push(route);
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &r,
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=1",
                ],
                None,
            )?;
            nft(&r, &router_rules(nat))?;
        }
        Ok(lab)
    }

    /// Home `i` (from 0).
    pub fn home(&self, i: usize) -> &Home {
        &self.homes[i]
    }

    /// How many packets from other homes' routers the router of home `i`
    /// has let into its LAN: non-zero once a direct connection between two
    /// homes carried anything (a punched hole), zero while every byte
    /// between them went through a relay on the internet.
    pub fn packets_from_other_homes(&self, i: usize) -> Result<u64, String> {
        let listing = run(
            "ip",
            &[
                "netns",
                "exec",
                &self.homes[i].router,
                "nft",
                "list",
                "counter",
                "ip",
                "filter",
                "from_homes",
            ],
            None,
        )?;
        let words: Vec<&str> = listing.split_whitespace().collect();
        words
            .windows(2)
            .find(|w| w[0] == "packets")
            .and_then(|w| w[1].parse().ok())
            .ok_or_else(|| format!("no packet count in the router's counter: {listing}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth pairs with an end in it.
        for home in &self.homes {
            let _ = ip(&format!("netns del {}", home.ns));
            let _ = ip(&format!("netns del {}", home.router));
        }
        let _ = ip(&format!("netns del {}", self.internet));
        for link in &self.links {
            let _ = run("ip", &["link", "del", link], None);
        }
        for route in &self.routes {
            let _ = ip(&format!("route del {route}"));
        }
    }
}
