"""The text track: DICE sentiment editing with a masked language model (notebook 05, paper §4.2).

`sentiment_data` loads and splits the Sentiment Editing pairs (the `text-data` stage), `model` and
`train` build and fine-tune the embedded `text` MLM from the wheel's MiniLM encoder (the `train-text`
stage; `baseline` is the from-scratch model it replaced, `train-text-baseline`), `editing` inverts and edits
pairs through `adapters.MaskedLM`, `metrics` scores the edits and `report` assembles the tables.
May import `core`, `adapters`, `errors`, `io` and `config`.
"""
