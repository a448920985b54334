"""The report page: the same analysis as the JSON answer, drawn for the person on call."""
