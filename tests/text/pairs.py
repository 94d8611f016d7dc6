"""Three Sentiment Editing pairs written for the text tests (not from the dataset)."""

from dicelib.text.sentiment_data import SentimentPair

PAIRS = [
    SentimentPair(0, "Negative Sentiment: After the test.", " She felt anxious.",
                  "Positive Sentiment: After the test.", " She felt confident."),
    SentimentPair(1, "Negative Sentiment: Regarding the lecture.", " It was dull and confusing.",
                  "Positive Sentiment: Regarding the lecture.", " It was clear and engaging."),
    SentimentPair(2, "Negative Sentiment: At the airport.", " The flight was delayed.",
                  "Positive Sentiment: At the airport.", " The flight was on time."),
]
