//! The `rdht node` process's event loop: polls the swarm (the rendezvous
//! [`Behaviour`] does all the work inside) and answers the handle's
//! commands.

use libp2p::futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::Swarm;
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::{Behaviour, Command};

pub(super) async fn run(mut swarm: Swarm<Behaviour>, mut commands: mpsc::Receiver<Command>) {
    loop {
        tokio::select! {
            event = swarm.select_next_some() => on_event(event),
            command = commands.recv() => match command {
                None | Some(Command::Shutdown) => {
                    drain(&mut swarm).await;
                    info!("rendezvous node stopped");
                    return;
                }
                Some(Command::Fingerprint(reply)) => {
                    drain(&mut swarm).await;
                    let _ = reply.send(swarm.behaviour_mut().store().fingerprint());
                }
                Some(Command::Stats(reply)) => {
                    drain(&mut swarm).await;
                    let _ = reply.send(swarm.behaviour_mut().store().stats());
                }
            },
        }
    }
}

/// The behaviour logs what it does; the process has nothing to add.
fn on_event(event: SwarmEvent<super::Event>) {
    if let SwarmEvent::Behaviour(event) = event {
        debug!(?event, "rendezvous event");
    }
}

/// Verifies and applies everything waiting and writes every change
/// (before answering a question about the state, or stopping).
async fn drain(swarm: &mut Swarm<Behaviour>) {
    swarm.behaviour_mut().flush();
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::Behaviour(super::Event::Flushed) => return,
            event => on_event(event),
        }
    }
}
