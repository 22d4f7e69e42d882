//! `sluice.v1.Groups` on a cluster proxy: every call is forwarded to the
//! elected coordinator (found in the metadata store, under
//! [`coordinator::ELECTION`]). While the coordinator moves (it died, or
//! lost its lease), calls are retried on the new one for up to
//! [`RETRY_FOR`]; the client sees only the delay.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_controller::coordinator;
use sluice_metadata::MetadataStore;
use sluice_proto::v1;
use sluice_proto::v1::groups_client::GroupsClient;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

/// How long a call keeps looking for a coordinator.
const RETRY_FOR: Duration = Duration::from_secs(15);

/// Forwards group requests to the coordinator.
#[derive(Debug, Clone)]
pub struct GroupsForwarder {
    metadata: Arc<dyn MetadataStore>,
    /// The coordinator's address and a channel to it, once found.
    current: Arc<Mutex<Option<(String, Channel)>>>,
}

impl GroupsForwarder {
    pub fn new(metadata: Arc<dyn MetadataStore>) -> Self {
        Self {
            metadata,
            current: Arc::default(),
        }
    }

    pub fn into_server(self) -> v1::groups_server::GroupsServer<Self> {
        v1::groups_server::GroupsServer::new(self)
    }

    /// A client of the current coordinator.
    async fn client(&self) -> Result<(String, GroupsClient<Channel>), Status> {
        if let Some((addr, channel)) = self.lock().clone() {
            return Ok((addr, GroupsClient::new(channel)));
        }
        let leader = self
            .metadata
            .leader(coordinator::ELECTION)
            .await
            .map_err(|e| not_coordinator(format!("cannot ask the metadata store: {e}")))?
            .ok_or_else(|| {
                not_coordinator(
                    "no group coordinator is running (start a `sluice controller` or `sluice coordinator`)"
                        .into(),
                )
            })?;
        let addr = String::from_utf8_lossy(&leader).into_owned();
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| not_coordinator(format!("bad coordinator address {addr:?}: {e}")))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        *self.lock() = Some((addr.clone(), channel.clone()));
        Ok((addr, GroupsClient::new(channel)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(String, Channel)>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls the coordinator, finding it again (with backoff) while it
    /// answers NOT_COORDINATOR or cannot be reached.
    async fn forward<T, F, Fut>(&self, call: F) -> Result<Response<T>, Status>
    where
        F: Fn(GroupsClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        self.forward_with(true, call).await
    }

    /// [`forward`](Self::forward); without `retry_lost`, a call that may
    /// have reached the coordinator (a transport failure, not a refusal) is
    /// not sent again: a first JoinGroup sent twice would add a member
    /// nobody answers for.
    async fn forward_with<T, F, Fut>(
        &self,
        retry_lost: bool,
        call: F,
    ) -> Result<Response<T>, Status>
    where
        F: Fn(GroupsClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let deadline = Instant::now() + RETRY_FOR;
        let mut backoff = Duration::from_millis(50);
        loop {
            let (addr, result) = match self.client().await {
                Ok((addr, client)) => (Some(addr), call(client).await),
                Err(status) => (None, Err(status)),
            };
            let status = match result {
                Ok(response) => return Ok(response),
                Err(status) if moving(&status) => status,
                Err(status) => return Err(status),
            };
            let refused = sluice_proto::error_code(&status) == Some("NOT_COORDINATOR");
            if addr.is_some() && !refused && !retry_lost {
                return Err(status);
            }
            if addr.is_some() {
                // Ask the store again: the coordinator may have moved.
                let mut current = self.lock();
                if current.as_ref().map(|(a, _)| a) == addr.as_ref() {
                    *current = None;
                }
            }
            if Instant::now() + backoff > deadline {
                return Err(status);
            }
            tracing::debug!(coordinator = ?addr, error = %status.message(), "coordinator unavailable; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

/// The coordinator is moving or unreachable: worth asking again.
fn moving(status: &Status) -> bool {
    match sluice_proto::error_code(status) {
        Some(code) => code == "NOT_COORDINATOR",
        None => matches!(status.code(), Code::Unavailable | Code::Unknown),
    }
}

fn not_coordinator(message: String) -> Status {
    sluice_proto::status(Code::Unavailable, "NOT_COORDINATOR", message)
}

/// One forwarding method per call.
macro_rules! forward {
    ($($method:ident($request:ty) -> $response:ty;)*) => {
        #[tonic::async_trait]
        impl v1::groups_server::Groups for GroupsForwarder {
            async fn join_group(
                &self,
                request: Request<v1::JoinGroupRequest>,
            ) -> Result<Response<v1::JoinGroupResponse>, Status> {
                // The coordinator would see this proxy: name the client.
                let peer = request.remote_addr();
                let mut request = request.into_inner();
                request.client_host = coordinator::client_host(request.client_host, peer);
                let first = request.member_id.is_empty();
                self.forward_with(!first, |mut client| {
                    let request = request.clone();
                    async move { client.join_group(request).await }
                })
                .await
            }
            $(
                async fn $method(
                    &self,
                    request: Request<$request>,
                ) -> Result<Response<$response>, Status> {
                    let request = request.into_inner();
                    self.forward(|mut client| {
                        let request = request.clone();
                        async move { client.$method(request).await }
                    })
                    .await
                }
            )*
        }
    };
}

forward! {
    sync_group(v1::SyncGroupRequest) -> v1::SyncGroupResponse;
    heartbeat(v1::HeartbeatRequest) -> v1::HeartbeatResponse;
    leave_group(v1::LeaveGroupRequest) -> v1::LeaveGroupResponse;
    commit_offsets(v1::CommitOffsetsRequest) -> v1::CommitOffsetsResponse;
    fetch_offsets(v1::FetchOffsetsRequest) -> v1::FetchOffsetsResponse;
    list_groups(v1::ListGroupsRequest) -> v1::ListGroupsResponse;
    describe_group(v1::DescribeGroupRequest) -> v1::GroupDescription;
    delete_group(v1::DeleteGroupRequest) -> v1::DeleteGroupResponse;
}
