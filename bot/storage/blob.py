"""Conversation and user state in Azure Blob Storage (`BOT_STATE_STORE=blob`): one JSON blob per state item.

Why not botbuilder-azure's `BlobStorage`: botbuilder-azure 4.17.1 requires azure-storage-blob==12.7.0 (2021),
azure-cosmos==4.7.0 and aiounittest at run time, which pins the whole Azure SDK stack years back; it accepts only a
connection string or an account key (no managed identity); it rebuilds stored documents with jsonpickle (any class a
document names); its read swallows every HTTP error but 404 as "no such item" (a storage outage silently restarts
every dialog); and a blob with an unusual name (a conversation id with `/` or `..`) is stored under that raw name.
This store keeps botbuilder's `Storage` contract with the current SDK's async client (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob.aio import ContainerClient, LinearRetry
from botbuilder.core import Storage

from bot.storage import (
    ABSENT_IN_TURN,
    OUTCOME_CONFLICT,
    OUTCOME_ERROR,
    OUTCOME_NOT_FOUND,
    STORE_BLOB,
    NoObserver,
    StateConflict,
    StateStoreError,
    StorageCall,
    StorageObserver,
    StoreTarget,
)
from bot.storage.codec import StateCodecError, dumps, loads

if TYPE_CHECKING:
    from bot.settings import Settings

MAX_BLOB_NAME = 1024
# A turn waits for its state: fail within seconds rather than the SDK's default of minutes of retries (15 s backoff).
CONNECTION_TIMEOUT_SECONDS = 3
READ_TIMEOUT_SECONDS = 10
RETRIES = 2
RETRY_BACKOFF_SECONDS = 0.2


def blob_name(key: str) -> str:
    """The blob holding `key`: the key percent-encoded (one flat name, no `/` or `..` segments), hashed if too long."""
    name = quote(key, safe="")
    if len(name) <= MAX_BLOB_NAME:
        return name
    return "sha256-" + hashlib.sha256(key.encode()).hexdigest()


def _retry_policy() -> LinearRetry:
    # LinearRetry takes whole seconds in its signature but computes with floats.
    return LinearRetry(backoff=RETRY_BACKOFF_SECONDS, retry_total=RETRIES, random_jitter_range=0.1)  # type: ignore[arg-type]


def _client_options() -> dict[str, Any]:
    return {
        "retry_policy": _retry_policy(),
        "connection_timeout": CONNECTION_TIMEOUT_SECONDS,
        "read_timeout": READ_TIMEOUT_SECONDS,
    }


def _e_tag(item: Any) -> str | None:
    value = item.get("e_tag") if isinstance(item, dict) else getattr(item, "e_tag", None)
    return None if value is None else str(value)


def _set_e_tag(item: Any, e_tag: str) -> None:
    if isinstance(item, dict):
        item["e_tag"] = e_tag
    elif hasattr(item, "e_tag"):
        item.e_tag = e_tag


def _document(item: Any) -> Any:
    # The e-tag is the blob's, not part of the document.
    if isinstance(item, dict) and "e_tag" in item:
        return {key: value for key, value in item.items() if key != "e_tag"}
    return item


def _reason(error: BaseException) -> str:
    if isinstance(error, ClientAuthenticationError):
        return f"access refused (HTTP {error.status_code}): check the bot's role on the container or the account key"
    if isinstance(error, HttpResponseError):
        code = getattr(error, "error_code", None) or (error.reason or "")
        return f"HTTP {error.status_code} {code}".strip()
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return "cannot reach the storage account (connection failed or timed out)"
    if isinstance(error, StateCodecError):
        return str(error)
    return f"{type(error).__name__}: {error}"


class BlobStateStorage(Storage):
    """botbuilder `Storage` on one Azure Blob Storage container, with optimistic concurrency on the blobs' ETags.

    read: items that exist, each with `e_tag` = the blob's ETag. write: an item with an e-tag is written only if the
    blob still has that ETag (If-Match), else `StateConflict`; `"*"` overwrites; no e-tag (an item read as absent)
    creates, and is a `StateConflict` if the blob exists by then: the first turns of a new conversation racing on
    two instances must not overwrite each other (botbuilder's MemoryStorage overwrites). delete: gone or absent.
    The container is created on first use if missing (and again if it disappears). Failures raise `StateStoreError`
    naming the account, the container and the cause; the next call tries again, so an outage ends without a restart.
    """

    def __init__(self, container: ContainerClient, observer: StorageObserver | None = None) -> None:
        super().__init__()
        self._container = container
        self._observer = observer or NoObserver()
        self._container_ready = False
        self._create_lock = asyncio.Lock()
        url = urlsplit(container.url)
        self.target = StoreTarget(
            system=STORE_BLOB,
            server_address=url.hostname or "",
            server_port=url.port,
            container=container.container_name,
            url=f"{url.scheme}://{url.netloc}{url.path}",
        )
        self._close_credential: Any = None

    @classmethod
    def from_settings(cls, settings: Settings, observer: StorageObserver | None = None) -> BlobStateStorage:
        """A connection string (Azurite, account keys) or the account URL with the bot's managed identity."""
        container_name = settings.blob_container
        if settings.blob_connection_string:
            container = ContainerClient.from_connection_string(
                settings.blob_connection_string, container_name, **_client_options()
            )
            return cls(container, observer)
        # DefaultAzureCredential takes the App Service managed identity in Azure (AZURE_CLIENT_ID picks a
        # user-assigned one) and a developer's `az login` elsewhere. Nothing is contacted before the first call.
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        container = ContainerClient(settings.blob_account_url, container_name, credential, **_client_options())
        store = cls(container, observer)
        store._close_credential = credential
        return store

    def _failure(self, action: str, error: BaseException) -> StateStoreError:
        where = f"{self.target.server_address}{':' + str(self.target.server_port) if self.target.server_port else ''}"
        return StateStoreError(
            f"state store (Azure Blob, {where}, container {self.target.container!r}): {action} failed: {_reason(error)}"
        )

    async def _call(self, operation: str, method: str, action: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        """One backend call, observed; Azure errors other than 404/412 become StateStoreError."""
        call = StorageCall(operation=operation, method=method)
        with self._observer.observe(call, self.target):
            try:
                result = await function(*args, **kwargs)
            except ResourceModifiedError as error:
                call.status_code, call.outcome, call.error_type = 412, OUTCOME_CONFLICT, "412"
                raise StateConflict(f"Etag conflict: {action}: the item changed since it was read") from error
            except ResourceNotFoundError as error:
                call.status_code, call.outcome = 404, OUTCOME_NOT_FOUND
                raise error
            except ResourceExistsError as error:
                call.status_code, call.outcome = 409, OUTCOME_CONFLICT
                raise error
            except (AzureError, StateCodecError) as error:
                call.outcome = OUTCOME_ERROR
                call.status_code = getattr(error, "status_code", None)
                call.error_type = str(call.status_code) if call.status_code else type(error).__qualname__
                raise self._failure(action, error) from error
            call.status_code = {"read": 200, "write": 201, "delete": 202, "create_container": 201}.get(operation)
            return result

    async def _ensure_container(self) -> None:
        if self._container_ready:
            return
        async with self._create_lock:
            if self._container_ready:
                return
            with contextlib.suppress(ResourceExistsError):
                await self._call("create_container", "PUT", "creating the container", self._container.create_container)
            self._container_ready = True

    async def _with_container(self, operation: Any) -> Any:
        """Runs `operation`; if the container has gone (deleted by someone), creates it again and retries once."""
        await self._ensure_container()
        try:
            return await operation()
        except ResourceNotFoundError as error:
            if getattr(error, "error_code", None) != "ContainerNotFound":
                raise
        self._container_ready = False
        await self._ensure_container()
        return await operation()

    async def read(self, keys: list[str]) -> dict[str, Any]:
        absent = ABSENT_IN_TURN.get()
        wanted = [key for key in keys if absent is None or key not in absent]
        if not wanted:
            return {}
        found = await asyncio.gather(*(self._read_one(key) for key in wanted))
        if absent is not None:
            absent.update(key for key, item in zip(wanted, found, strict=True) if item is None)
        return {key: item for key, item in zip(wanted, found, strict=True) if item is not None}

    async def _read_one(self, key: str) -> Any:
        blob = self._container.get_blob_client(blob_name(key))

        async def download() -> Any:
            downloader = await self._call("read", "GET", "reading an item", blob.download_blob)
            raw = await downloader.readall()
            return raw, downloader.properties.etag

        try:
            raw, e_tag = await self._with_container(download)
        except ResourceNotFoundError:
            return None
        try:
            item = loads(raw)
        except StateCodecError as error:
            raise self._failure("reading an item", error) from error
        _set_e_tag(item, e_tag)
        return item

    async def write(self, changes: dict[str, Any]) -> None:
        if changes is None:
            raise ValueError("Changes are required when writing")
        if changes:
            await asyncio.gather(*(self._write_one(key, item) for key, item in changes.items()))

    async def _write_one(self, key: str, item: Any) -> None:
        e_tag = _e_tag(item)
        if e_tag == "":
            raise ValueError("storage.write(): etag missing")
        try:
            data = dumps(_document(item))
        except (StateCodecError, ValueError) as error:
            raise self._failure("writing an item", error) from error
        blob = self._container.get_blob_client(blob_name(key))
        conditions: dict[str, Any] = {}
        if e_tag is None:  # read as absent: create it, unless another turn created it meanwhile
            conditions = {"match_condition": MatchConditions.IfMissing}
        elif e_tag != "*":
            conditions = {"etag": e_tag, "match_condition": MatchConditions.IfNotModified}

        async def upload() -> Any:
            return await self._call(
                "write", "PUT", "writing an item", blob.upload_blob, data, overwrite=True, **conditions
            )

        try:
            result = await self._with_container(upload)
        except ResourceNotFoundError as error:  # If-Match on a blob deleted meanwhile: also a stale e-tag
            raise StateConflict("Etag conflict: writing an item: the item was deleted since it was read") from error
        except ResourceExistsError as error:
            raise StateConflict("Etag conflict: writing an item: the item was created since it was read") from error
        _set_e_tag(item, result["etag"])  # a second write in the same turn builds on this one
        absent = ABSENT_IN_TURN.get()
        if absent is not None:
            absent.discard(key)

    async def delete(self, keys: list[str]) -> None:
        if keys:
            await asyncio.gather(*(self._delete_one(key) for key in keys))

    async def _delete_one(self, key: str) -> None:
        blob = self._container.get_blob_client(blob_name(key))

        async def remove() -> None:
            await self._call("delete", "DELETE", "deleting an item", blob.delete_blob)

        with contextlib.suppress(ResourceNotFoundError):
            await self._with_container(remove)
        absent = ABSENT_IN_TURN.get()
        if absent is not None:
            absent.add(key)

    async def aclose(self) -> None:
        await self._container.close()
        if self._close_credential is not None:
            await self._close_credential.close()
