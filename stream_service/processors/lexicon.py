"""Small word lists the HRV extractor scores text against.

They are deliberately short (a few hundred words in all): the extractor measures style, not
meaning, and a short list keeps it fast and predictable. Every entry is lower case; the
extractor lower-cases tokens and folds the typographic apostrophe before looking them up.
"""

from __future__ import annotations

POSITIVE: frozenset[str] = frozenset(
    """
    good great excellent amazing awesome wonderful fantastic brilliant superb outstanding
    love loved loving lovely happy glad joy joyful delight delighted delightful pleasure
    success successful win winning wins best better beautiful bright brilliant calm
    confident easy effortless elegant enjoy exciting excited fresh friendly fun gentle
    grateful thrilled perfect powerful proud reliable remarkable rewarding safe smooth
    smart strong stunning thank thanks trusted incredible inspiring kind warm welcome
    benefit benefits gain improve improved improves progress robust secure simple
    valuable clear efficient fast faster helpful hope hopeful positive free bonus
    unbeatable breakthrough boost seamless seamlessly thriving bold gorgeous magical
    """.split()
)

NEGATIVE: frozenset[str] = frozenset(
    """
    bad poor terrible awful horrible worst worse hate hated sad angry anger fear afraid
    fail failed failure fails failing problem problems issue issues risk risks risky
    danger dangerous difficult hard pain painful loss lose losing lost broken break
    error errors bug bugs crash crashes slow slower weak wrong ugly boring dull tired
    worry worried anxious stress stressful confusing confused unclear costly expensive
    waste wasted delay delays delayed hurt harm damage threat complaint complaints
    unfortunately regret reject rejected denied deny cannot never nothing lonely dark
    cold bitter grim gloomy messy chaotic outage outages downtime deprecated
    """.split()
)

INTENSIFIERS: frozenset[str] = frozenset(
    """
    very really so extremely incredibly absolutely totally truly super highly hugely
    seriously insanely utterly completely deeply massively ultra mega most
    """.split()
)

HIGH_AROUSAL: frozenset[str] = frozenset(
    """
    amazing awesome thrilling thrilled exciting excited incredible unbelievable wow
    urgent now hurry instantly explosive electrifying breathtaking stunning spectacular
    epic insane massive huge unstoppable revolutionary skyrocket skyrockets blazing
    furious panic shocking rush launch launching limited hot
    """.split()
)

WARM_ADDRESS: frozenset[str] = frozenset(
    """
    you your yours yourself yourselves you're you'll you've we us our ours ourselves
    we're we'll we've let's together friend friends dear hello hi hey welcome thanks
    thank family community everyone folks
    """.split()
)

CONCRETE: frozenset[str] = frozenset(
    """
    red blue green gold golden silver amber crimson violet white black grey gray bright
    light shadow shadows sun sunlight moon stars sky rain wind storm snow fog mist sea
    ocean river waves shore sand stone rock mountain hill forest tree trees leaves
    leaf grass flower flowers garden field road street door window wall room table
    chair bed floor roof fire smoke ash candle lamp glass water ice salt bread coffee
    tea honey apple smell scent taste sweet sour bitter warm cold soft rough smooth
    silk velvet wood iron steel dust hands hand face eyes voice whisper echo thunder
    song hum footsteps city village house kitchen train ship boat bridge map lantern
    feather bird birds horse dog cat ink paper book letter coat boots
    """.split()
)

IMPERATIVE_VERBS: frozenset[str] = frozenset(
    """
    try discover imagine join start get grab see explore learn find build sign claim
    unlock book shop buy order download subscribe register call contact visit tell
    share picture think consider remember ask check make take give let reach
    """.split()
)

CALL_TO_ACTION_PHRASES: tuple[str, ...] = (
    "sign up",
    "learn more",
    "get started",
    "join us",
    "join now",
    "click",
    "don't miss",
    "act now",
    "book a demo",
    "try it",
    "start today",
    "order now",
    "shop now",
    "subscribe",
    "reach out",
    "let us know",
    "tell us",
)
