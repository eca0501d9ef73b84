//! The smallest program that finds a quorum's members from an
//! application's own libp2p swarm, every record verified:
//!
//! ```text
//! cargo run --release -p node --example discover -- <rendezvous address ending /p2p/<id>> <quorum key hex>
//! ```

use libp2p::futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{noise, ping, tcp, yamux};
use node::client;

/// The application's behaviours, with rdht's discovery among them.
#[derive(NetworkBehaviour)]
struct App {
    rdht: client::Behaviour,
    ping: ping::Behaviour, // stands for the application's own
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(rendezvous), Some(quorum_key)) = (args.next(), args.next()) else {
        return Err(
            "usage: discover <rendezvous address ending /p2p/<id>> <quorum key hex>".into(),
        );
    };
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| App {
            rdht: client::Behaviour::default(),
            ping: ping::Behaviour::default(),
        })?
        .build();
    swarm
        .behaviour_mut()
        .rdht
        .add_rendezvous_address(rendezvous.parse()?)?;
    swarm.behaviour_mut().rdht.discover(quorum_key.parse()?);
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::Behaviour(AppEvent::Rdht(client::Event::Discovered { found, .. })) => {
                for peer in &found.answer.peers {
                    let record = &peer.record;
                    println!(
                        "member {} {} {:?}",
                        record.index(),
                        record.peer_id(),
                        record.addrs()
                    );
                }
                return Ok(());
            }
            SwarmEvent::Behaviour(AppEvent::Rdht(client::Event::Failed { error, .. })) => {
                return Err(error.into());
            }
            _ => {}
        }
    }
}
