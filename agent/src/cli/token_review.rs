//! The collector's TokenReviews through kube's client: the one Kubernetes
//! call `agent collector` makes. It lives in the binary because the agent's
//! side (tally-node) already links kube; the collector crate sees only
//! [`TokenReviewApi`], so kube and k8s-openapi stay off its build path.
use std::{path::PathBuf, sync::OnceLock, time::Duration};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use tally_collector::token_review::{ApiFuture, NODE_NAME_EXTRA, ReviewStatus, TokenReviewApi};

/// How long connecting to, or one answer of, the API server may take (the
/// collector bounds each call and retries).
const TIMEOUT: Duration = Duration::from_secs(3);

/// TokenReviews with the pod's in-cluster credentials, or a kubeconfig.
pub struct KubeTokenReviews {
    kubeconfig: Option<PathBuf>,
    client: OnceLock<kube::Client>,
}

impl KubeTokenReviews {
    pub fn new(kubeconfig: Option<PathBuf>) -> Self {
        Self {
            kubeconfig,
            client: OnceLock::new(),
        }
    }

    async fn client(&self) -> Result<kube::Client, String> {
        let mut config = match &self.kubeconfig {
            None => kube::Config::incluster().map_err(|e| {
                format!("no in-cluster credentials ({e}); give --token-review-kubeconfig")
            })?,
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?
            }
        };
        config.connect_timeout = Some(TIMEOUT);
        config.read_timeout = Some(TIMEOUT);
        kube::Client::try_from(config).map_err(|e| format!("cannot build the client: {e}"))
    }
}

impl TokenReviewApi for KubeTokenReviews {
    fn connect(&self) -> ApiFuture<'_, ()> {
        Box::pin(async move {
            let client = self.client().await?;
            // Connected once, at the collector's start.
            let _ = self.client.set(client);
            Ok(())
        })
    }

    fn create<'a>(&'a self, token: &'a str, audience: &'a str) -> ApiFuture<'a, ReviewStatus> {
        Box::pin(async move {
            let client = self
                .client
                .get()
                .ok_or("the Kubernetes client is not connected")?;
            let api: Api<TokenReview> = Api::all(client.clone());
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.to_owned()),
                    audiences: Some(vec![audience.to_owned()]),
                },
                ..Default::default()
            };
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| e.to_string())?;
            let status = answer.status.unwrap_or_default();
            let user = status.user.unwrap_or_default();
            Ok(ReviewStatus {
                authenticated: status.authenticated == Some(true),
                error: status.error,
                audiences: status.audiences.unwrap_or_default(),
                username: user.username.unwrap_or_default(),
                node_names: user
                    .extra
                    .and_then(|mut e| e.remove(NODE_NAME_EXTRA))
                    .unwrap_or_default(),
            })
        })
    }
}
