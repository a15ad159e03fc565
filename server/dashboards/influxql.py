"""InfluxQL targets for grafana-foundation-sdk, which has typed builders for Grafana's own objects but none for
the InfluxDB data source: a query and an annotation target, serialised the way Grafana stores them."""

from __future__ import annotations

from typing import Literal

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

DATASOURCE = dashboard.DataSourceRef(type_val="influxdb", uid="${datasource}")
Format = Literal["time_series", "table"]


class InfluxQuery(cogvariants.Dataquery):
    def __init__(self, ref_id: str, query: str, result_format: Format = "time_series", alias: str | None = None):
        self.ref_id, self.query, self.result_format, self.alias = ref_id, query, result_format, alias

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": DATASOURCE,
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.alias:
            payload["alias"] = self.alias
        return payload


class Query(cogbuilder.Builder[InfluxQuery]):
    def __init__(self, ref_id: str, query: str, result_format: Format = "time_series", alias: str | None = None):
        self._query = InfluxQuery(ref_id, query, result_format, alias)

    def build(self) -> InfluxQuery:
        return self._query


class AnnotationTarget(dashboard.AnnotationTarget):
    """InfluxQL annotations: the query, and which columns give the text and the tags."""

    def __init__(self, query: str, text_column: str, tags_column: str) -> None:
        super().__init__(limit=100, match_any=False, tags=[], type_val="tags")
        self.query, self.text_column, self.tags_column = query, text_column, tags_column

    def to_json(self) -> dict[str, object]:
        return {
            **super().to_json(),
            "query": self.query,
            "rawQuery": True,
            "refId": "Anno",
            "textColumn": self.text_column,
            "tagsColumn": self.tags_column,
        }


class Annotation(cogbuilder.Builder[AnnotationTarget]):
    def __init__(self, query: str, text_column: str, tags_column: str) -> None:
        self._target = AnnotationTarget(query, text_column, tags_column)

    def build(self) -> AnnotationTarget:
        return self._target
