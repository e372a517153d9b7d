"""A small client for the Label Studio REST API: the calls ranking and review projects need.

Label Studio (https://labelstud.io) is the annotation tool: people rank sampled answers in its web
UI. Its Python SDK, `label-studio-sdk` 2.x, is not used: it pins opencv-python-headless < 4.13,
which needs numpy < 2.3 and would downgrade the project's numpy. The six documented endpoints below
are what the SDK's project, import, task, annotation and export calls send.

Authentication: a personal access token (a JWT refresh token, exchanged for an access token) or a
legacy API token (`label-studio start --enable-legacy-api-token --user-token ...`).
"""

from __future__ import annotations

import requests


class LabelStudioError(RuntimeError):
    pass


class LabelStudio:
    def __init__(self, url: str, api_key: str, timeout: float = 30.0):
        self.url, self.timeout = url.rstrip("/"), timeout
        self.session = requests.Session()
        if api_key.count(".") == 2:  # a JWT: a personal access token is a refresh token
            access = self._call("POST", "/api/token/refresh", json={"refresh": api_key})["access"]
            self.session.headers["Authorization"] = f"Bearer {access}"
        else:
            self.session.headers["Authorization"] = f"Token {api_key}"

    def _call(self, method: str, path: str, **kwargs):
        try:
            response = self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise LabelStudioError(f"Label Studio at {self.url} is not reachable ({exc}); is it running, and is the URL right?") from exc
        if response.status_code in (401, 403):
            raise LabelStudioError(f"Label Studio at {self.url} refused the API key ({response.status_code}): use a personal access "
                                   "token from Account & Settings, or a legacy token with legacy tokens enabled")
        if not response.ok:
            raise LabelStudioError(f"Label Studio {method} {path} failed with {response.status_code}: {response.text[:300]}")
        return response.json() if response.content else None

    def project_by_title(self, title: str) -> dict | None:
        page_number = 1
        while True:
            page = self._call("GET", "/api/projects", params={"title": title, "page": page_number, "page_size": 100})
            projects = page["results"] if isinstance(page, dict) else page
            found = next((p for p in projects if p["title"] == title), None)
            if found or not isinstance(page, dict) or not page.get("next"):
                return found
            page_number += 1

    def create_project(self, title: str, label_config: str, description: str = "", maximum_annotations: int = 1) -> dict:
        return self._call("POST", "/api/projects", json={"title": title, "label_config": label_config, "description": description,
                                                         "maximum_annotations": maximum_annotations})

    def publish(self, title: str, label_config: str, tasks: list[dict], description: str = "") -> dict:
        """The project called `title`, created with `tasks` imported if it does not exist yet (a rerun imports nothing twice);
        returns where it is, as the tasks assets record it."""
        project = self.project_by_title(title)
        if project is None:
            project = self.create_project(title, label_config, description=description)
            self.import_tasks(project["id"], tasks)
        return {"url": self.url, "project_id": project["id"], "title": title, "project_url": f"{self.url}/projects/{project['id']}"}

    def project(self, project_id: int) -> dict:
        """The project with its counters (`task_number`, `total_annotations_number`, `num_tasks_with_annotations`...)."""
        return self._call("GET", f"/api/projects/{project_id}")

    def import_tasks(self, project_id: int, tasks: list[dict]) -> int:
        return self._call("POST", f"/api/projects/{project_id}/import", json=tasks)["task_count"]

    def tasks(self, project_id: int) -> list[dict]:
        out, page = [], 1
        while True:
            body = self._call("GET", "/api/tasks", params={"project": project_id, "page": page, "page_size": 100})
            out += body["tasks"]
            if len(out) >= body["total"] or not body["tasks"]:
                return out
            page += 1

    def submit_annotation(self, task_id: int, result: list[dict], lead_time: float | None = None) -> dict:
        """What the labeling UI sends when an annotator submits."""
        return self._call("POST", f"/api/tasks/{task_id}/annotations", json={"result": result, "lead_time": lead_time})

    def export(self, project_id: int) -> list[dict]:
        """Every task with its annotations, in Label Studio's JSON export format."""
        return self._call("GET", f"/api/projects/{project_id}/export", params={"exportType": "JSON"})
