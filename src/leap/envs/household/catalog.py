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
                "cabinet": (3, 7), "drawer": (2, 4), "countertop": (1, 3), "shelf": (0, 2),
                "fridge": (1, 1), "microwave": (1, 1), "sinkbasin": (1, 1), "stoveburner": (2, 4),
                "coffeemachine": (1, 1), "toaster": (0, 1), "garbagecan": (1, 1),
                "diningtable": (0, 1),
            },
            ("mug", "apple", "potato", "tomato", "egg", "bread", "lettuce", "plate", "bowl", "cup",
             "pan", "pot", "knife", "spoon", "fork", "spatula", "winebottle", "dishsponge",
             "saltshaker", "peppershaker"),
        ),
        RoomKind(
            "bathroom",
            {
                "countertop": (1, 1), "sinkbasin": (1, 2), "cabinet": (2, 4), "drawer": (0, 3),
                "shelf": (0, 2), "toilet": (1, 1), "towelholder": (1, 1), "garbagecan": (1, 1),
                "bathtubbasin": (0, 1),
            },
            ("soapbar", "cloth", "towel", "toiletpaper", "spraybottle", "soapbottle", "candle",
             "dishsponge"),
        ),
        RoomKind(
            "bedroom",
            {
                "bed": (1, 1), "desk": (1, 1), "dresser": (0, 1), "drawer": (2, 5), "shelf": (1, 4),
                "sidetable": (1, 2), "safe": (0, 1), "garbagecan": (1, 1), "laundryhamper": (0, 1),
                "armchair": (0, 1),
            },
            ("book", "cd", "cellphone", "alarmclock", "pen", "pencil", "creditcard", "keychain",
             "laptop", "pillow", "watch"),
        ),
        RoomKind(
            "livingroom",
            {
                "sofa": (1, 1), "armchair": (0, 2), "coffeetable": (1, 1), "sidetable": (1, 2),
                "shelf": (1, 3), "drawer": (1, 3), "cabinet": (0, 2), "tvstand": (1, 1),
                "garbagecan": (1, 1), "dresser": (0, 1), "safe": (0, 1),
            },
            ("remotecontrol", "book", "newspaper", "statue", "vase", "keychain", "creditcard",
             "watch", "laptop", "pillow", "cellphone"),
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
        _kind("mug", {"cabinet": .35, "shelf": .2, "countertop": .2, "coffeemachine": .15,
                      "sinkbasin": .05, "diningtable": .05}, "clean heat cool",
              targets=("coffeemachine", "cabinet", "shelf", "countertop", "diningtable")),
        _kind("apple", {"countertop": .35, "fridge": .3, "diningtable": .2, "microwave": .1,
                        "garbagecan": .05}, "clean heat cool", targets=FOOD_TARGETS),
        _kind("potato", {"fridge": .35, "countertop": .3, "diningtable": .15, "microwave": .1,
                         "garbagecan": .1}, "clean heat cool", targets=FOOD_TARGETS),
        _kind("tomato", {"fridge": .4, "countertop": .3, "diningtable": .2, "sinkbasin": .1},
              "clean heat cool", targets=FOOD_TARGETS),
        _kind("egg", {"fridge": .5, "countertop": .3, "diningtable": .1, "garbagecan": .1},
              "heat cool", targets=FOOD_TARGETS),
        _kind("bread", {"countertop": .5, "diningtable": .3, "fridge": .1, "cabinet": .1},
              "heat cool", targets=("countertop", "diningtable", "fridge", "microwave")),
        _kind("lettuce", {"fridge": .5, "countertop": .3, "diningtable": .2}, "clean cool",
              targets=("countertop", "diningtable", "fridge", "garbagecan")),
        _kind("plate", {"cabinet": .45, "countertop": .2, "shelf": .15, "diningtable": .15,
                        "sinkbasin": .05}, "clean heat cool", targets=DISH_TARGETS),
        _kind("bowl", {"cabinet": .4, "shelf": .2, "countertop": .2, "diningtable": .1, "fridge": .1},
              "clean heat cool", targets=DISH_TARGETS),
        _kind("cup", {"cabinet": .35, "countertop": .25, "shelf": .15, "sinkbasin": .1, "fridge": .1,
                      "diningtable": .05}, "clean heat cool", targets=DISH_TARGETS),
        _kind("pan", {"stoveburner": .5, "cabinet": .3, "countertop": .2}, "clean cool",
              targets=("stoveburner", "countertop", "cabinet", "diningtable", "fridge")),
        _kind("pot", {"stoveburner": .5, "cabinet": .25, "countertop": .15, "shelf": .1}, "clean cool",
              targets=("stoveburner", "countertop", "cabinet", "shelf", "fridge")),
        _kind("knife", {"drawer": .5, "countertop": .3, "diningtable": .2}, "clean",
              targets=UTENSIL_TARGETS),
        _kind("spoon", {"drawer": .6, "countertop": .25, "diningtable": .15}, "clean",
              targets=UTENSIL_TARGETS),
        _kind("fork", {"drawer": .6, "countertop": .2, "diningtable": .2}, "clean",
              targets=UTENSIL_TARGETS),
        _kind("spatula", {"drawer": .5, "countertop": .3, "diningtable": .2}, "clean",
              targets=UTENSIL_TARGETS),
        _kind("winebottle", {"cabinet": .3, "fridge": .3, "countertop": .2, "shelf": .2}, "cool",
              targets=("cabinet", "countertop", "diningtable", "fridge", "shelf")),
        _kind("dishsponge", {"sinkbasin": .35, "countertop": .3, "cabinet": .2, "drawer": .15},
              "clean", targets=("cabinet", "countertop", "drawer", "garbagecan")),
        _kind("saltshaker", {"cabinet": .4, "countertop": .3, "shelf": .2, "drawer": .1},
              targets=("cabinet", "countertop", "drawer", "shelf", "diningtable")),
        _kind("peppershaker", {"cabinet": .4, "countertop": .3, "shelf": .2, "drawer": .1},
              targets=("cabinet", "countertop", "drawer", "shelf", "diningtable")),
        _kind("soapbar", {"countertop": .3, "cabinet": .3, "sinkbasin": .2, "bathtubbasin": .1,
                          "toilet": .1}, "clean",
              targets=("cabinet", "countertop", "toilet", "garbagecan", "bathtubbasin", "drawer")),
        _kind("cloth", {"cabinet": .35, "countertop": .25, "drawer": .2, "bathtubbasin": .1,
                        "sinkbasin": .1}, "clean",
              targets=("cabinet", "countertop", "drawer", "bathtubbasin", "garbagecan")),
        _kind("towel", {"towelholder": .6, "countertop": .2, "cabinet": .2}, "clean",
              targets=("towelholder", "countertop", "cabinet", "bathtubbasin")),
        _kind("toiletpaper", {"cabinet": .4, "toilet": .3, "countertop": .2, "drawer": .1},
              targets=("cabinet", "toilet", "countertop", "drawer", "garbagecan")),
        _kind("spraybottle", {"cabinet": .5, "countertop": .3, "toilet": .2},
              targets=("cabinet", "countertop", "toilet", "garbagecan", "drawer")),
        _kind("soapbottle", {"countertop": .5, "cabinet": .3, "toilet": .1, "shelf": .1},
              targets=("cabinet", "countertop", "toilet", "garbagecan", "shelf")),
        _kind("candle", {"cabinet": .3, "countertop": .3, "toilet": .2, "shelf": .2},
              targets=("cabinet", "countertop", "toilet", "shelf", "drawer")),
        _kind("book", {"shelf": .35, "desk": .2, "bed": .15, "sidetable": .1, "coffeetable": .1,
                       "sofa": .1}, lookable=True, targets=DESK_TARGETS),
        _kind("cd", {"drawer": .35, "shelf": .25, "desk": .2, "safe": .1, "sidetable": .1},
              lookable=True, targets=DESK_TARGETS),
        _kind("cellphone", {"bed": .25, "desk": .2, "sidetable": .2, "drawer": .1, "dresser": .1,
                            "sofa": .1, "coffeetable": .05}, lookable=True, targets=DESK_TARGETS),
        _kind("alarmclock", {"desk": .4, "sidetable": .3, "dresser": .2, "shelf": .1}, lookable=True,
              targets=DESK_TARGETS),
        _kind("pen", {"desk": .4, "drawer": .3, "sidetable": .2, "shelf": .1}, lookable=True,
              targets=DESK_TARGETS),
        _kind("pencil", {"desk": .4, "drawer": .3, "sidetable": .2, "shelf": .1}, lookable=True,
              targets=DESK_TARGETS),
        _kind("creditcard", {"drawer": .3, "desk": .2, "sidetable": .2, "dresser": .15,
                             "coffeetable": .15}, lookable=True, targets=DESK_TARGETS),
        _kind("keychain", {"drawer": .3, "sidetable": .25, "dresser": .2, "coffeetable": .15,
                           "safe": .1}, lookable=True, targets=DESK_TARGETS),
        _kind("laptop", {"desk": .4, "bed": .3, "sofa": .15, "coffeetable": .15}, lookable=True,
              targets=("desk", "bed", "sofa", "coffeetable", "dresser")),
        _kind("pillow", {"bed": .6, "sofa": .3, "armchair": .1},
              targets=("bed", "sofa", "armchair")),
        _kind("watch", {"sidetable": .3, "dresser": .3, "drawer": .2, "safe": .2}, lookable=True,
              targets=DESK_TARGETS),
        _kind("remotecontrol", {"sofa": .3, "coffeetable": .3, "tvstand": .2, "sidetable": .1,
                                "armchair": .1}, lookable=True,
              targets=("sofa", "coffeetable", "tvstand", "sidetable", "armchair", "drawer")),
        _kind("newspaper", {"sofa": .4, "coffeetable": .3, "sidetable": .2, "armchair": .1},
              lookable=True, targets=("sofa", "coffeetable", "sidetable", "armchair", "garbagecan")),
        _kind("statue", {"shelf": .4, "coffeetable": .2, "sidetable": .2, "dresser": .2},
              lookable=True, targets=("shelf", "coffeetable", "sidetable", "dresser", "tvstand")),
        _kind("vase", {"shelf": .5, "coffeetable": .2, "sidetable": .2, "tvstand": .1}, lookable=True,
              targets=("shelf", "coffeetable", "sidetable", "tvstand", "safe")),
    )
}


def preposition(receptacle_type: str) -> str:
    return "in" if RECEPTACLES[receptacle_type].container else "on"
