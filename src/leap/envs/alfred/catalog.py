"""Static facts of the household world: rooms, receptacles, objects and their location priors.

The priors are what makes the world learnable without privilege: a mug is usually in a cabinet
or on a shelf, an egg in the fridge. Tasks sample object placements from them, so a student who
has seen many episodes can search sensibly, while the planner reads the true placement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

Transform = Literal["clean", "heat", "cool"]

#: task type -> what it needs; names follow ALFWorld's six types, shortened as in the paper's tables
TASK_TYPES: tuple[str, ...] = ("pick", "clean", "heat", "cool", "look", "pick_two")
TRANSFORM_OF_TASK: MappingProxyType[str, Transform] = MappingProxyType(
    {"clean": "clean", "heat": "heat", "cool": "cool"}
)
#: the receptacle type that performs each transform
APPLIANCE: MappingProxyType[Transform, str] = MappingProxyType(
    {"clean": "sinkbasin", "heat": "microwave", "cool": "fridge"}
)
#: the adjective a transformed object carries in task texts ("a hot mug")
ADJECTIVE: MappingProxyType[Transform, str] = MappingProxyType(
    {"clean": "clean", "heat": "hot", "cool": "cool"}
)
LAMP = "desklamp"
LAMP_HOLDERS: tuple[str, ...] = ("desk", "sidetable", "dresser")


@dataclass(frozen=True)
class ReceptacleKind:
    name: str
    openable: bool = False
    #: receptacles you put things "in" (containers) rather than "on" (surfaces)
    container: bool = False


RECEPTACLES: dict[str, ReceptacleKind] = {
    k.name: k
    for k in (
        ReceptacleKind("cabinet", openable=True, container=True),
        ReceptacleKind("drawer", openable=True, container=True),
        ReceptacleKind("fridge", openable=True, container=True),
        ReceptacleKind("microwave", openable=True, container=True),
        ReceptacleKind("safe", openable=True, container=True),
        ReceptacleKind("garbagecan", container=True),
        ReceptacleKind("sinkbasin", container=True),
        ReceptacleKind("bathtubbasin", container=True),
        ReceptacleKind("laundryhamper", container=True),
        ReceptacleKind("coffeemachine"),
        ReceptacleKind("toaster"),
        ReceptacleKind("countertop"),
        ReceptacleKind("shelf"),
        ReceptacleKind("stoveburner"),
        ReceptacleKind("diningtable"),
        ReceptacleKind("desk"),
        ReceptacleKind("sidetable"),
        ReceptacleKind("dresser"),
        ReceptacleKind("coffeetable"),
        ReceptacleKind("tvstand"),
        ReceptacleKind("sofa"),
        ReceptacleKind("armchair"),
        ReceptacleKind("bed"),
        ReceptacleKind("toilet"),
        ReceptacleKind("towelholder"),
    )
}


@dataclass(frozen=True)
class RoomKind:
    name: str
    #: receptacle type -> (min, max) count in this room kind
    receptacles: dict[str, tuple[int, int]]
    objects: tuple[str, ...]


ROOMS: dict[str, RoomKind] = {
    r.name: r
    for r in (
        RoomKind(
            "kitchen",
            {
                "cabinet": (3, 7),
                "drawer": (2, 4),
                "countertop": (1, 3),
                "shelf": (0, 2),
                "fridge": (1, 1),
                "microwave": (1, 1),
                "sinkbasin": (1, 1),
                "stoveburner": (2, 4),
                "coffeemachine": (1, 1),
                "toaster": (0, 1),
                "garbagecan": (1, 1),
                "diningtable": (0, 1),
            },
            (
                "mug",
                "apple",
                "potato",
                "tomato",
                "egg",
                "bread",
                "lettuce",
                "plate",
                "bowl",
                "cup",
                "pan",
                "pot",
                "knife",
                "spoon",
                "fork",
                "spatula",
                "winebottle",
                "dishsponge",
                "saltshaker",
                "peppershaker",
            ),
        ),
        RoomKind(
            "bathroom",
            {
                "countertop": (1, 1),
                "sinkbasin": (1, 2),
                "cabinet": (2, 4),
                "drawer": (0, 3),
                "shelf": (0, 2),
                "toilet": (1, 1),
                "towelholder": (1, 1),
                "garbagecan": (1, 1),
                "bathtubbasin": (0, 1),
            },
            ("soapbar", "cloth", "towel", "toiletpaper", "spraybottle", "soapbottle", "candle", "dishsponge"),
        ),
        RoomKind(
            "bedroom",
            {
                "bed": (1, 1),
                "desk": (1, 1),
                "dresser": (0, 1),
                "drawer": (2, 5),
                "shelf": (1, 4),
                "sidetable": (1, 2),
                "safe": (0, 1),
                "garbagecan": (1, 1),
                "laundryhamper": (0, 1),
                "armchair": (0, 1),
            },
            (
                "book",
                "cd",
                "cellphone",
                "alarmclock",
                "pen",
                "pencil",
                "creditcard",
                "keychain",
                "laptop",
                "pillow",
                "watch",
            ),
        ),
        RoomKind(
            "livingroom",
            {
                "sofa": (1, 1),
                "armchair": (0, 2),
                "coffeetable": (1, 1),
                "sidetable": (1, 2),
                "shelf": (1, 3),
                "drawer": (1, 3),
                "cabinet": (0, 2),
                "tvstand": (1, 1),
                "garbagecan": (1, 1),
                "dresser": (0, 1),
                "safe": (0, 1),
            },
            (
                "remotecontrol",
                "book",
                "newspaper",
                "statue",
                "vase",
                "keychain",
                "creditcard",
                "watch",
                "laptop",
                "pillow",
                "cellphone",
            ),
        ),
    )
}


@dataclass(frozen=True)
class ObjectKind:
    name: str
    #: receptacle type -> prior weight of finding this object there
    prior: dict[str, float]
    #: transforms the object supports
    transforms: frozenset[Transform] = frozenset()
    #: can be the object of a "look at ... under the desklamp" task
    lookable: bool = False
    #: receptacle types it can be asked to go to in place tasks
    targets: tuple[str, ...] = field(default=())


def _kind(
    name: str,
    prior: dict[str, float],
    transforms: str = "",
    lookable: bool = False,
    targets: tuple[str, ...] = (),
) -> ObjectKind:
    return ObjectKind(name, prior, frozenset(transforms.split()), lookable, targets)  # type: ignore[arg-type]


FOOD_TARGETS = ("countertop", "diningtable", "fridge", "garbagecan", "microwave")
DISH_TARGETS = ("cabinet", "countertop", "diningtable", "shelf", "fridge", "microwave")
UTENSIL_TARGETS = ("countertop", "diningtable", "drawer", "sinkbasin")
DESK_TARGETS = ("desk", "sidetable", "shelf", "drawer", "dresser", "bed", "safe", "coffeetable", "sofa")

OBJECTS: dict[str, ObjectKind] = {
    k.name: k
    for k in (
        _kind(
            "mug",
            {
                "cabinet": 0.35,
                "shelf": 0.2,
                "countertop": 0.2,
                "coffeemachine": 0.15,
                "sinkbasin": 0.05,
                "diningtable": 0.05,
            },
            "clean heat cool",
            targets=("coffeemachine", "cabinet", "shelf", "countertop", "diningtable"),
        ),
        _kind(
            "apple",
            {"countertop": 0.35, "fridge": 0.3, "diningtable": 0.2, "microwave": 0.1, "garbagecan": 0.05},
            "clean heat cool",
            targets=FOOD_TARGETS,
        ),
        _kind(
            "potato",
            {"fridge": 0.35, "countertop": 0.3, "diningtable": 0.15, "microwave": 0.1, "garbagecan": 0.1},
            "clean heat cool",
            targets=FOOD_TARGETS,
        ),
        _kind(
            "tomato",
            {"fridge": 0.4, "countertop": 0.3, "diningtable": 0.2, "sinkbasin": 0.1},
            "clean heat cool",
            targets=FOOD_TARGETS,
        ),
        _kind(
            "egg",
            {"fridge": 0.5, "countertop": 0.3, "diningtable": 0.1, "garbagecan": 0.1},
            "heat cool",
            targets=FOOD_TARGETS,
        ),
        _kind(
            "bread",
            {"countertop": 0.5, "diningtable": 0.3, "fridge": 0.1, "cabinet": 0.1},
            "heat cool",
            targets=("countertop", "diningtable", "fridge", "microwave"),
        ),
        _kind(
            "lettuce",
            {"fridge": 0.5, "countertop": 0.3, "diningtable": 0.2},
            "clean cool",
            targets=("countertop", "diningtable", "fridge", "garbagecan"),
        ),
        _kind(
            "plate",
            {"cabinet": 0.45, "countertop": 0.2, "shelf": 0.15, "diningtable": 0.15, "sinkbasin": 0.05},
            "clean heat cool",
            targets=DISH_TARGETS,
        ),
        _kind(
            "bowl",
            {"cabinet": 0.4, "shelf": 0.2, "countertop": 0.2, "diningtable": 0.1, "fridge": 0.1},
            "clean heat cool",
            targets=DISH_TARGETS,
        ),
        _kind(
            "cup",
            {
                "cabinet": 0.35,
                "countertop": 0.25,
                "shelf": 0.15,
                "sinkbasin": 0.1,
                "fridge": 0.1,
                "diningtable": 0.05,
            },
            "clean heat cool",
            targets=DISH_TARGETS,
        ),
        _kind(
            "pan",
            {"stoveburner": 0.5, "cabinet": 0.3, "countertop": 0.2},
            "clean cool",
            targets=("stoveburner", "countertop", "cabinet", "diningtable", "fridge"),
        ),
        _kind(
            "pot",
            {"stoveburner": 0.5, "cabinet": 0.25, "countertop": 0.15, "shelf": 0.1},
            "clean cool",
            targets=("stoveburner", "countertop", "cabinet", "shelf", "fridge"),
        ),
        _kind(
            "knife", {"drawer": 0.5, "countertop": 0.3, "diningtable": 0.2}, "clean", targets=UTENSIL_TARGETS
        ),
        _kind(
            "spoon",
            {"drawer": 0.6, "countertop": 0.25, "diningtable": 0.15},
            "clean",
            targets=UTENSIL_TARGETS,
        ),
        _kind(
            "fork", {"drawer": 0.6, "countertop": 0.2, "diningtable": 0.2}, "clean", targets=UTENSIL_TARGETS
        ),
        _kind(
            "spatula",
            {"drawer": 0.5, "countertop": 0.3, "diningtable": 0.2},
            "clean",
            targets=UTENSIL_TARGETS,
        ),
        _kind(
            "winebottle",
            {"cabinet": 0.3, "fridge": 0.3, "countertop": 0.2, "shelf": 0.2},
            "cool",
            targets=("cabinet", "countertop", "diningtable", "fridge", "shelf"),
        ),
        _kind(
            "dishsponge",
            {"sinkbasin": 0.35, "countertop": 0.3, "cabinet": 0.2, "drawer": 0.15},
            "clean",
            targets=("cabinet", "countertop", "drawer", "garbagecan"),
        ),
        _kind(
            "saltshaker",
            {"cabinet": 0.4, "countertop": 0.3, "shelf": 0.2, "drawer": 0.1},
            targets=("cabinet", "countertop", "drawer", "shelf", "diningtable"),
        ),
        _kind(
            "peppershaker",
            {"cabinet": 0.4, "countertop": 0.3, "shelf": 0.2, "drawer": 0.1},
            targets=("cabinet", "countertop", "drawer", "shelf", "diningtable"),
        ),
        _kind(
            "soapbar",
            {"countertop": 0.3, "cabinet": 0.3, "sinkbasin": 0.2, "bathtubbasin": 0.1, "toilet": 0.1},
            "clean",
            targets=("cabinet", "countertop", "toilet", "garbagecan", "bathtubbasin", "drawer"),
        ),
        _kind(
            "cloth",
            {"cabinet": 0.35, "countertop": 0.25, "drawer": 0.2, "bathtubbasin": 0.1, "sinkbasin": 0.1},
            "clean",
            targets=("cabinet", "countertop", "drawer", "bathtubbasin", "garbagecan"),
        ),
        _kind(
            "towel",
            {"towelholder": 0.6, "countertop": 0.2, "cabinet": 0.2},
            "clean",
            targets=("towelholder", "countertop", "cabinet", "bathtubbasin"),
        ),
        _kind(
            "toiletpaper",
            {"cabinet": 0.4, "toilet": 0.3, "countertop": 0.2, "drawer": 0.1},
            targets=("cabinet", "toilet", "countertop", "drawer", "garbagecan"),
        ),
        _kind(
            "spraybottle",
            {"cabinet": 0.5, "countertop": 0.3, "toilet": 0.2},
            targets=("cabinet", "countertop", "toilet", "garbagecan", "drawer"),
        ),
        _kind(
            "soapbottle",
            {"countertop": 0.5, "cabinet": 0.3, "toilet": 0.1, "shelf": 0.1},
            targets=("cabinet", "countertop", "toilet", "garbagecan", "shelf"),
        ),
        _kind(
            "candle",
            {"cabinet": 0.3, "countertop": 0.3, "toilet": 0.2, "shelf": 0.2},
            targets=("cabinet", "countertop", "toilet", "shelf", "drawer"),
        ),
        _kind(
            "book",
            {"shelf": 0.35, "desk": 0.2, "bed": 0.15, "sidetable": 0.1, "coffeetable": 0.1, "sofa": 0.1},
            lookable=True,
            targets=DESK_TARGETS,
        ),
        _kind(
            "cd",
            {"drawer": 0.35, "shelf": 0.25, "desk": 0.2, "safe": 0.1, "sidetable": 0.1},
            lookable=True,
            targets=DESK_TARGETS,
        ),
        _kind(
            "cellphone",
            {
                "bed": 0.25,
                "desk": 0.2,
                "sidetable": 0.2,
                "drawer": 0.1,
                "dresser": 0.1,
                "sofa": 0.1,
                "coffeetable": 0.05,
            },
            lookable=True,
            targets=DESK_TARGETS,
        ),
        _kind(
            "alarmclock",
            {"desk": 0.4, "sidetable": 0.3, "dresser": 0.2, "shelf": 0.1},
            lookable=True,
            targets=DESK_TARGETS,
        ),
        _kind(
            "pen",
            {"desk": 0.4, "drawer": 0.3, "sidetable": 0.2, "shelf": 0.1},
            lookable=True,
            targets=DESK_TARGETS,
        ),
        _kind(
            "pencil",
            {"desk": 0.4, "drawer": 0.3, "sidetable": 0.2, "shelf": 0.1},
            lookable=True,
            targets=DESK_TARGETS,
        ),
        _kind(
            "creditcard",
            {"drawer": 0.3, "desk": 0.2, "sidetable": 0.2, "dresser": 0.15, "coffeetable": 0.15},
            lookable=True,
            targets=DESK_TARGETS,
        ),
        _kind(
            "keychain",
            {"drawer": 0.3, "sidetable": 0.25, "dresser": 0.2, "coffeetable": 0.15, "safe": 0.1},
            lookable=True,
            targets=DESK_TARGETS,
        ),
        _kind(
            "laptop",
            {"desk": 0.4, "bed": 0.3, "sofa": 0.15, "coffeetable": 0.15},
            lookable=True,
            targets=("desk", "bed", "sofa", "coffeetable", "dresser"),
        ),
        _kind("pillow", {"bed": 0.6, "sofa": 0.3, "armchair": 0.1}, targets=("bed", "sofa", "armchair")),
        _kind(
            "watch",
            {"sidetable": 0.3, "dresser": 0.3, "drawer": 0.2, "safe": 0.2},
            lookable=True,
            targets=DESK_TARGETS,
        ),
        _kind(
            "remotecontrol",
            {"sofa": 0.3, "coffeetable": 0.3, "tvstand": 0.2, "sidetable": 0.1, "armchair": 0.1},
            lookable=True,
            targets=("sofa", "coffeetable", "tvstand", "sidetable", "armchair", "drawer"),
        ),
        _kind(
            "newspaper",
            {"sofa": 0.4, "coffeetable": 0.3, "sidetable": 0.2, "armchair": 0.1},
            lookable=True,
            targets=("sofa", "coffeetable", "sidetable", "armchair", "garbagecan"),
        ),
        _kind(
            "statue",
            {"shelf": 0.4, "coffeetable": 0.2, "sidetable": 0.2, "dresser": 0.2},
            lookable=True,
            targets=("shelf", "coffeetable", "sidetable", "dresser", "tvstand"),
        ),
        _kind(
            "vase",
            {"shelf": 0.5, "coffeetable": 0.2, "sidetable": 0.2, "tvstand": 0.1},
            lookable=True,
            targets=("shelf", "coffeetable", "sidetable", "tvstand", "safe"),
        ),
    )
}


def preposition(receptacle_type: str) -> str:
    """The preposition for a receptacle: "in" a container, "on" a surface or an unknown type."""
    kind = RECEPTACLES.get(receptacle_type)
    return "in" if kind is not None and kind.container else "on"


def object_prior(object_type: str) -> dict[str, float]:
    """Where an object type is usually found (receptacle type -> weight); empty if unknown.

    ALFWorld has object types the embedded world lacks; agents fall back to plain search there.
    """
    kind = OBJECTS.get(object_type)
    return dict(kind.prior) if kind is not None else {}


def is_openable(receptacle_type: str) -> bool:
    """Whether receptacles of this type open; unknown types count as not openable (an agent
    still learns it from the "is closed" text it observes)."""
    kind = RECEPTACLES.get(receptacle_type)
    return kind.openable if kind is not None else False
