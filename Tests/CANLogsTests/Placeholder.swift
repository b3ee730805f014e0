// Tests for this stage arrive with it.
import Testing
