//! Stand-ins for the services a node talks to.

pub mod apiserver;
pub mod profiles_receiver;
