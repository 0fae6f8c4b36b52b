"""The describer's structured output: pydantic models and the JSON schema sent to the LLM.

Both describers (LLM and rules) produce a :class:`TrafficDescription`; the LLM is asked for it
with OpenAI's ``response_format={"type": "json_schema", "json_schema": {..., "strict": true}}``.
Strict mode accepts a subset of JSON Schema (every property required, no additional
properties, no numeric or length bounds), so :func:`llm_json_schema` derives that subset from
the models; the bounds are checked by pydantic when the reply is validated.
"""

from __future__ import annotations

import copy
from enum import Enum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_NAME: Final = "traffic_description"

COCO_NAMES: Final = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
"""COCO class names by id (the default detector's classes)."""

ROAD_USERS: Final = {0: "person", 1: "bicycle", 2: "car", 3: "motorcycle", 5: "bus", 7: "truck"}
"""COCO ids of road users, the classes counted by name; any other class counts as ``other``."""
VEHICLES: Final = frozenset({1, 2, 3, 5, 7})
"""Road users that can be a stopped vehicle."""


def class_name(class_id: int) -> str:
    """The COCO name of a class id, or ``class <id>`` past the COCO list."""
    return COCO_NAMES[class_id] if 0 <= class_id < len(COCO_NAMES) else f"class {class_id}"


def count_key(class_id: int) -> str:
    """The :class:`ClassCounts` field a class is counted in."""
    return ROAD_USERS.get(class_id, "other")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassCounts(_Strict):
    """Distinct road users seen in the window, by class."""

    person: int = Field(ge=0, description="Pedestrians.")
    bicycle: int = Field(ge=0, description="Bicycles (with their riders).")
    car: int = Field(ge=0, description="Cars, vans, SUVs.")
    motorcycle: int = Field(ge=0, description="Motorcycles and scooters.")
    bus: int = Field(ge=0, description="Buses.")
    truck: int = Field(ge=0, description="Trucks and lorries.")
    other: int = Field(ge=0, description="Any other detected object.")

    def total(self) -> int:
        return sum(self.model_dump().values())


class Congestion(str, Enum):
    """How loaded the road in view is."""

    FREE = "free"  # few road users, unhindered
    LIGHT = "light"
    MODERATE = "moderate"
    HEAVY = "heavy"  # dense, slow
    STANDSTILL = "standstill"  # vehicles present and not moving


class IncidentKind(str, Enum):
    STOPPED_VEHICLE = "stopped_vehicle"
    QUEUE = "queue"
    WRONG_WAY = "wrong_way"
    PEDESTRIAN_ON_ROAD = "pedestrian_on_road"
    NEAR_MISS = "near_miss"
    COLLISION = "collision"
    OTHER = "other"


class Incident(_Strict):
    kind: IncidentKind = Field(description="What kind of event it is.")
    description: str = Field(
        min_length=1, max_length=1000, description="One sentence: what happened, where."
    )
    track_ids: list[int] = Field(
        max_length=100, description="Ids of the tracks involved (from the metadata), may be empty."
    )


class TrafficDescription(_Strict):
    """What the describer says about one camera and time window."""

    counts: ClassCounts
    congestion: Congestion
    incidents: list[Incident] = Field(max_length=50, description="Notable events; often none.")
    summary: str = Field(
        min_length=1,
        max_length=4000,
        description="One paragraph for a traffic operator: what the camera showed.",
    )


_UNSUPPORTED: Final = frozenset(
    {
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
        "minLength", "maxLength", "pattern", "format", "minItems", "maxItems", "default",
        "title",
    }
)  # fmt: skip


def _strict(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_strict(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and len(node) > 1:
        # strict mode refuses siblings beside $ref (a description): inline the definition
        node = {**defs[ref.rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}}
    out = {
        k: (_strict(v, defs) if k != "properties" else {p: _strict(s, defs) for p, s in v.items()})
        for k, v in node.items()
        if k not in _UNSUPPORTED
    }
    if out.get("type") == "object" and "properties" in out:
        out["additionalProperties"] = False
        out["required"] = list(out["properties"])
    return out


def _strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema()
    return dict(_strict(raw, raw.get("$defs", {})))


def llm_json_schema() -> dict[str, Any]:
    """The JSON schema of :class:`TrafficDescription` in OpenAI's strict-mode subset."""
    return copy.deepcopy(_SCHEMA)


_SCHEMA: Final = _strict_schema(TrafficDescription)


def response_format() -> dict[str, Any]:
    """The ``response_format`` argument of a chat-completions request."""
    return {
        "type": "json_schema",
        "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": llm_json_schema()},
    }
