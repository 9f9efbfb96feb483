"""The 32 sentences both sides of the MiniLM benchmark embed (one batch)."""
SENTENCES = [
    "A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
    "A man is riding a horse.", "A woman is playing violin.", "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.", "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.", "The cat sits outside.",
    "The new movie is awesome.", "The cat plays in the garden.", "A woman watches TV.",
    "The new movie is so great.", "Do you like pizza?", "How do I serve a model on Kubernetes?",
    "Canary rollouts send a share of traffic to the new version.", "Autoscaling reacts to load.",
    "The registry keeps every approved model version.", "Embeddings map text to vectors.",
    "Latency matters at the tail.", "Throughput is measured in requests per second.",
    "Batching amortises the cost of a model call.", "Two cores and no GPU.",
    "The weather is lovely today.", "It is raining heavily outside.", "She plays the piano beautifully.",
    "He is reading a book in the library.", "The train arrives at noon.", "Birds fly south in winter.",
    "Coffee keeps me awake.", "The river flows into the sea.",
]
