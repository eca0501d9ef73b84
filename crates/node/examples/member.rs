//! A quorum member inside an application's own swarm: given its identity
//! (the one the quorum file lists), the quorum file, its key share and
//! the rendezvous nodes, rdht's member behaviour registers the member,
//! refreshes its record and co-signs the quorum's namespace record:
//!
//! ```text
//! cargo run --release -p node --example member -- <data dir with identity.key and key_share.json> <quorum.toml> <rendezvous address ending /p2p/<id>>...
//! ```
//!
//! (`rdht node --quorum` is the same behaviour with a DKG, a status and a
//! key share file around it.)

use std::path::PathBuf;

use libp2p::futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use node::quorum::{self, KeyShareFile, MemberConfig};
use node::quorum_file::QuorumFile;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(quorum_file)) = (args.next(), args.next()) else {
        return Err("usage: member <data dir> <quorum.toml> <rendezvous address>...".into());
    };
    let dir = PathBuf::from(dir);
    let identity = node::identity::load(&dir)?.ok_or("no identity.key in the data directory")?;
    let share_bytes = node::identity::read_secret_file(&dir.join(quorum::KEY_SHARE_FILE))?
        .ok_or("no key_share.json in the data directory")?;
    let share = KeyShareFile::decode(&share_bytes)?;
    let quorum = QuorumFile::load(std::path::Path::new(&quorum_file))?;
    let rendezvous = args.map(|a| a.parse()).collect::<Result<Vec<_>, _>>()?;
    let me = identity.public().to_peer_id();
    let listen = quorum
        .address_of(&me)
        .cloned()
        .ok_or("this identity is not in the quorum file")?;

    let mut swarm = node::behaviour::build_swarm_with(
        identity.clone(),
        &node::behaviour::SwarmSettings::default(),
        |_| quorum::Behaviour::new(),
    )?;
    let addrs = node::behaviour::listen_all(&mut swarm, &[listen]).await?;
    let mut config = MemberConfig::new(quorum, rendezvous);
    config.key_share = Some(share.share);
    config.epoch = share.epoch;
    swarm.behaviour_mut().start(identity, &config, addrs)?;
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::Behaviour(member::Event::Registered {
                rendezvous,
                first: true,
                ..
            }) => println!("registered at rendezvous node #{rendezvous}"),
            SwarmEvent::Behaviour(member::Event::Refused {
                rendezvous, code, ..
            }) => println!("rendezvous node #{rendezvous} refused: {code:?} (retrying)"),
            SwarmEvent::Behaviour(member::Event::Failed(e)) => return Err(e.into()),
            _ => {}
        }
    }
}
