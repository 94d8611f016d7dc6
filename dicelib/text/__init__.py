"""The text track: DICE sentiment editing with a masked language model (notebook 05, paper §4.2).

`sentiment_data` loads and splits the Sentiment Editing pairs (the `text-data` stage), `model` and
`train` build and train the embedded `text` MLM (the `train-text` stage), `editing` inverts and edits
pairs through `adapters.MaskedLM`, `metrics` scores the edits and `report` assembles the tables.
May import `core`, `adapters`, `errors`, `io` and `config`.
"""
