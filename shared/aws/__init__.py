"""boto3 clients with explicit timeouts and bounded retries, created once per process from one session.

That session's data loader finds a service in its own folder: botocore's loader lists every service folder it
ships (~420, once per model type) to check that one exists, 0.25-0.3 s of a Lambda cold start (issue #11).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, UnknownServiceError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.loaders import Loader, create_loader, instance_cache

AWS_CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=30,
    retries={"max_attempts": 4, "mode": "standard"},
)
# AWS error codes worth another try once botocore's own retries are spent (SageMaker says Throttling, Bedrock
# ThrottlingException; the Model* codes: an imported model waking up, a model that failed or took too long on
# this request).
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalServerException",
        "InternalFailure",
        "RequestTimeout",
        "RequestTimeoutException",
        "ModelNotReadyException",
        "ModelTimeoutException",
        "ModelErrorException",
    }
)


class ServiceFolderLoader(Loader):  # type: ignore[misc]  # botocore ships no type hints
    """botocore's loader, except that loading a model looks for the service's own folder, not at every folder.

    The full listing is still made for the error when the service is unknown, so the message is botocore's own.
    """

    @instance_cache
    def load_service_model(self, service_name: str, type_name: str, api_version: str | None = None) -> Any:
        if not self.has_model(service_name, type_name):
            raise UnknownServiceError(
                service_name=service_name,
                known_service_names=", ".join(self.list_available_services(type_name)),
            )
        if api_version is None:
            api_version = self.determine_latest_version(service_name, type_name)
        model = self.load_data(str(Path(service_name, api_version, type_name)))
        self._extras_processor.process(model, self._find_extras(service_name, type_name, api_version))
        return model

    def has_model(self, service_name: str, type_name: str) -> bool:
        """`service_name in self.list_available_services(type_name)`, answered from that service's folders alone."""
        for location in map(Path, self._potential_locations()):
            # A name from the listing, as the full scan's: a path through a folder or another case is no service.
            if any(entry.name == service_name and entry.is_dir() for entry in location.iterdir()):
                versions = (location / service_name).iterdir()
                if any(self.file_loader.exists(str(version / type_name)) for version in versions):
                    return True
        return False


@cache
def session() -> Any:
    """The boto3 session every client of this process comes from (region and AWS_ENDPOINT_URL* from the
    environment, as boto3's default session), reading models through `ServiceFolderLoader`."""
    botocore_session = botocore.session.get_session()
    # botocore's own loader factory sets the search paths (AWS_DATA_PATH first, then the bundled models).
    search_paths = create_loader(botocore_session.get_config_variable("data_path")).search_paths
    loader = ServiceFolderLoader(extra_search_paths=search_paths, include_default_search_paths=False)
    botocore_session.register_component("data_loader", loader)
    return boto3.Session(botocore_session=botocore_session)


@cache
def client(service: str) -> Any:
    return session().client(service, config=AWS_CLIENT_CONFIG)


@cache
def dynamodb_table(name: str) -> Any:
    return session().resource("dynamodb", config=AWS_CLIENT_CONFIG).Table(name)


@cache
def s3_link_signer() -> Any:
    """The S3 client that signs download links: Signature Version 4 (S3 refuses version 2 links in newer
    regions, and boto3 still signs presigned URLs with version 2 unless told)."""
    return session().client("s3", config=AWS_CLIENT_CONFIG.merge(Config(signature_version="s3v4")))


@contextmanager
def classified_errors(
    provider: str,
    action: str,
    *,
    transient: Callable[[str, str | None], Exception],
    refused: Callable[[str, int | None, str | None], Exception],
    advice: Mapping[str, str],
    service: str | None = None,
) -> Iterator[None]:
    """botocore's failures as a provider's own: `transient(message, code)` for what may pass (timeouts, dropped
    connections, throttling, 5xx), `refused(message, status, code)` for the rest, with the service's words and
    what a user can do about that code (`advice`). A provider speaking to several services names the one."""
    where = f"{provider} {service}" if service else provider
    says = f"{service} says: " if service else ""
    try:
        yield
    except (BotoConnectionError, HTTPClientError) as error:  # timeouts and dropped connections included
        raise transient(f"{where}: {action} failed transiently ({type(error).__name__})", None) from error
    except ClientError as error:
        details = error.response.get("Error", {})
        code = str(details.get("Code") or "") or None
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in TRANSIENT_CODES or (code is None and isinstance(status, int) and (status == 429 or status >= 500)):
            raise transient(f"{where}: {action} failed transiently ({code or f'HTTP {status}'})", code) from error
        message = str(details.get("Message") or error).strip()
        what_to_do = advice.get(code or "")
        text = f"{provider} refused {action} ({code}): {says}{message}" + (f" {what_to_do}" if what_to_do else "")
        raise refused(text, status, code) from error
