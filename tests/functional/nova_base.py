"""The base of our tests in nova's functional framework.

Two things in nova's functional base do not fit a pytest run against an
installed nova wheel; they are set right here, once.
"""

import os
import sys

from nova.tests.functional import integrated_helpers


class NovaAccelTestCase(integrated_helpers.ProviderUsageBaseTestCase):
    compute_driver = "fake.MediumFakeDriver"

    def _clear_attrs(self):
        # nova's version deletes public attributes at cleanup, which
        # pytest still reads afterwards.
        pass

    def setUp(self):
        # The wheel puts api-paste.ini under <prefix>/etc/nova; nova's test
        # config looks beside site-packages.
        self.flags(api_paste_config=os.path.join(
            sys.prefix, "etc", "nova", "api-paste.ini"), group="wsgi")
        super().setUp()
