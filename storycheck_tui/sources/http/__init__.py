"""The ``http`` story source, one concern per module.

* :mod:`.source`: :class:`HttpSource`, one request per check, its clients per route;
* :mod:`.request`: the request template (method, URL, JSON body, ``{username}``);
* :mod:`.decide`: the order of decisions: response rules, status lists, items path;
* :mod:`.client`: one ``httpx.Client`` per route (headers, no cookies, redirects);
* :mod:`.transport` and :mod:`.deadline`: the per-request wall deadline, on every socket operation;
* :mod:`.body`: reading a body within its size limit;
* :mod:`.status`: what a status means before the body (``Retry-After``, the status lists);
* :mod:`.parsing`: from a JSON body to stories;
* :mod:`.failures`: every exception as a typed CheckError.
"""

from storycheck_tui.sources.http.client import USER_AGENT
from storycheck_tui.sources.http.parsing import BadBody, parse_stories
from storycheck_tui.sources.http.source import DEADLINE_FACTOR, HttpSource
from storycheck_tui.sources.http.status import parse_retry_after

__all__ = ["HttpSource", "parse_retry_after", "parse_stories", "BadBody", "USER_AGENT", "DEADLINE_FACTOR"]
