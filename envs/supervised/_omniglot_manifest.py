"""Content manifest of the Omniglot archives (Lake et al. 2015; GitHub brendenlake/omniglot).

For every alphabet, ``(number of PNGs, sha256)`` where the sha256 is taken over the lines
``"<member path> <sha256 of the PNG's bytes>"`` (each ended by a newline) sorted by path (see
``envs.supervised.omniglot_fetch.content_digests``). Computed from a copy of the 32,460 upstream
PNG files (964 + 659 characters, 20 drawers each) with::

    from envs.supervised.omniglot_fetch import content_digests
    content_digests("images_background.zip") | content_digests("images_evaluation.zip")
"""

ALPHABET_DIGESTS: dict[str, tuple[int, str]] = {
    "images_background/Alphabet_of_the_Magi": (
        400,
        "ef64292fd01dfd5e900718d09939cdd708e0119ca3241f072f6f3fc1c7475d4f",
    ),
    "images_background/Anglo-Saxon_Futhorc": (
        580,
        "05bfafd082917cf5959e65c2f42d40dc94e6eab81573f503e9beb3b2084def30",
    ),
    "images_background/Arcadian": (
        520,
        "d6aaf1e7bd5d2234a7681568e192f1f12c2a866b6467609bea202f6283882b47",
    ),
    "images_background/Armenian": (
        820,
        "8bf675bd79f37e7fc04dc8bcc063c4650dfc8806f80ac63b2b77d0123316e1ba",
    ),
    "images_background/Asomtavruli_(Georgian)": (
        800,
        "c524b777789576b55b9eaa0f38262000cd294826e59edfca43118a644fd37361",
    ),
    "images_background/Balinese": (
        480,
        "d6ce218fc83a6a58515e97feb0a6bdb89f8417f6d84ed549d35f5a1ee2a081ef",
    ),
    "images_background/Bengali": (
        920,
        "7bc387bcf7b25497811f62fb4864666989782e295fa7aeb36da1d2970a953df2",
    ),
    "images_background/Blackfoot_(Canadian_Aboriginal_Syllabics)": (
        280,
        "3795b95e8b84b9c25c616d433cb30899641ce963fe45e6b6d014299480edd466",
    ),
    "images_background/Braille": (
        520,
        "d734ca586dfe48e7a6181a445f529f1a12c8d4bbe3152e1322cfc858cfdf9ed8",
    ),
    "images_background/Burmese_(Myanmar)": (
        680,
        "edf5725cf11c6d10d089f2c89000a4dbdcc23427343910cf95d069084fe3d2ee",
    ),
    "images_background/Cyrillic": (
        660,
        "925840fd276d58aefe4609e40a3536a267a670eb03633f2d8d95ac2640eb2119",
    ),
    "images_background/Early_Aramaic": (
        440,
        "a9fc47f178c5c0ece3b1b5652db7f18caa931c7095a3fd9cce7ae29b9b6ad511",
    ),
    "images_background/Futurama": (
        520,
        "d63819deea7daa3a64273ba6a106d50d935125250d479256bb29ca4645a6aaed",
    ),
    "images_background/Grantha": (
        860,
        "65996f162807ee3b0acda61a83a4b6c83b88c9043f1a6f58a6d0b01ed8d41317",
    ),
    "images_background/Greek": (
        480,
        "e2da3732af9730e3a56c37a312f91bdb161b45f10fb2749a4d957f3846bb42f8",
    ),
    "images_background/Gujarati": (
        960,
        "d0e724b3ba28749e76ed5192f118ec2042e2caa6eb85f80502507d64d206d55d",
    ),
    "images_background/Hebrew": (
        440,
        "0a73f06439d0ece5967a5b746598505f96d1409dbdbc577657fa0427455e7105",
    ),
    "images_background/Inuktitut_(Canadian_Aboriginal_Syllabics)": (
        320,
        "68afdb8e0aef6aef10377b19d0092653cef325c0ffd3b374ea680f1cffa7b3c1",
    ),
    "images_background/Japanese_(hiragana)": (
        1040,
        "87f746b1c8640bc9b53d3b4035ffad44dc5bb0a7bd60ef43aeba32fb146e9469",
    ),
    "images_background/Japanese_(katakana)": (
        940,
        "a5363eb88e0be2fa672300cbf901f5531b2e1b2ef1d5b24a8bf5961226cc611e",
    ),
    "images_background/Korean": (
        800,
        "d1adbd48e21bfc2743639ac23670204e22f6179cca01d619069f23448dac82fd",
    ),
    "images_background/Latin": (
        520,
        "29ea01081128f805bf32c780482495d5b288ec1970e4e028501aca74e7ec71ee",
    ),
    "images_background/Malay_(Jawi_-_Arabic)": (
        800,
        "6ee46c5cab54bd47af060f5168b6a3181b4b5cf940d09bdd1d6098da22026886",
    ),
    "images_background/Mkhedruli_(Georgian)": (
        820,
        "53ff3fbdfec3703f92677e0c2e3c1ea216783f7f12ce0c9249860996cdf3cc77",
    ),
    "images_background/N_Ko": (
        660,
        "1c304b11630e5ed793830bc9acd5d43b1bfd22ee1732334e19c5b352a71b2b86",
    ),
    "images_background/Ojibwe_(Canadian_Aboriginal_Syllabics)": (
        280,
        "dd198bcca1b50bce7d2fe7f86f7826592dc0b6a2f5388c71344dca3de021b9cf",
    ),
    "images_background/Sanskrit": (
        840,
        "ed2cf051d2ea2ff9f46f5b42e5d4c68524c505f07f684a7675035458f4aa5253",
    ),
    "images_background/Syriac_(Estrangelo)": (
        460,
        "3f7ca9fb967df503018ccc5284830fc4d06746e48bb565cf3ac30afb39082a46",
    ),
    "images_background/Tagalog": (
        340,
        "f269db12863811910f3cd656e0583337799115e8fa5d23817b10cdc88edb5aa7",
    ),
    "images_background/Tifinagh": (
        1100,
        "13bea4fa8263578b83dbb552c912f805bfaa2febd12ac95755f0b6952cee6efa",
    ),
    "images_evaluation/Angelic": (
        400,
        "23552f66b1afd5c10687f8d9c5b2c76bad2bf662ca500c5e372f8a0f90507fe9",
    ),
    "images_evaluation/Atemayar_Qelisayer": (
        520,
        "44cd88f333fbfd1fa65cc72564a10102401d4fd394a9e625fdbea406e885b9b7",
    ),
    "images_evaluation/Atlantean": (
        520,
        "a895a78f5f398be6cfcc9f38bfdcfeff9906074d2f6c38c438b33f2cbc7a24c1",
    ),
    "images_evaluation/Aurek-Besh": (
        520,
        "3305152f290f49438993a826d6701d8acb8afec427b50acd230a6a8eac5988f8",
    ),
    "images_evaluation/Avesta": (
        520,
        "eea70a4e71e33b786edbfb5542674fbe2be63eacdfb6dbb02213f55eab076961",
    ),
    "images_evaluation/Ge_ez": (
        520,
        "24687d54dd5d8e210cdc253d500eb54bae59fdb195f42d701ff40f76185ddb2a",
    ),
    "images_evaluation/Glagolitic": (
        900,
        "79b2facf435c642b9bb339d993199d773f3aaefe5c0b027a29be3d7c1ef5944d",
    ),
    "images_evaluation/Gurmukhi": (
        900,
        "9357ab0e75e75933f9b92c5c308f6916bbe612fc8bcdb10b1b9b1e30ba151cdf",
    ),
    "images_evaluation/Kannada": (
        820,
        "aec03a4d488b621279555374cabe17c4827e3e716ca47de797338010a4fcb891",
    ),
    "images_evaluation/Keble": (
        520,
        "4ef398c059b8cf9736ea386ad356d4f31de400206e9079ce7ef3562cf84dbf5a",
    ),
    "images_evaluation/Malayalam": (
        940,
        "9c6e16eed234bda9ecdcf1f91f0f6489204825baea9c4decc17116b21879aee2",
    ),
    "images_evaluation/Manipuri": (
        800,
        "0e476cb95bc6fb8db2fbfbb382ddeac75db17d82e8dcee8132628e2abbfb6435",
    ),
    "images_evaluation/Mongolian": (
        600,
        "7c982be3b4002c622d2e671a3290ffa81ff0aa2b520e41c38edf8a24d3aec2f2",
    ),
    "images_evaluation/Old_Church_Slavonic_(Cyrillic)": (
        900,
        "02926e1e1cc537fd6105d4b285584a1790f8f590cdec78e3560e05103e57569a",
    ),
    "images_evaluation/Oriya": (
        920,
        "da33d1ab2371903962b200bf3ea294c0fb01b5b7cb4d85ad7a07b6a14b5d4dc0",
    ),
    "images_evaluation/Sylheti": (
        560,
        "38cdfd551c7e0e41b2c1aaa455e993b95eaa9880981f7083a3c902fa34b6f1cc",
    ),
    "images_evaluation/Syriac_(Serto)": (
        460,
        "7f573bcf03383213a0e598966e4c01a23409450daed282416b147d789d5af5cb",
    ),
    "images_evaluation/Tengwar": (
        500,
        "0bdf8e8c506590959095c61d5167aa5e271a9b98f00c6666458ac97290131c3b",
    ),
    "images_evaluation/Tibetan": (
        840,
        "2ce1a50f4995f53be4c9abdeeb6b33884975f247ac34857162b34f492d78ccfb",
    ),
    "images_evaluation/ULOG": (
        520,
        "98edaf1c6fe147cbef6bb6d29c61e07a7abe691aa1b438e0df6b45e35e0d7ebf",
    ),
}
