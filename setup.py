from setuptools import find_packages, setup

with open("README.md", encoding="utf-8") as readme:
    long_description = readme.read()

setup(
    name="mnemo-obs",
    version="0.1.0",
    description="Request metrics, trace ids and a live health summary for WSGI apps, "
    "stored in PostgreSQL",
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(exclude=("tests", "tests.*", "benchmarks", "benchmarks.*")),
    package_data={
        "mnemo_obs": [
            "py.typed",
            "sql/*.sql",
            # The dashboard: its page, CSS, JS modules and the vendored uPlot.
            "dashboard/index.html",
            "dashboard/static/*.css",
            "dashboard/static/*.png",
            "dashboard/static/js/*.js",
            "dashboard/static/vendor/uplot/*",
        ]
    },
    # 3.9 for importlib.resources.files; 3.10 for `X | None` at runtime in
    # dataclasses. Tested on 3.11.
    python_requires=">=3.10",
    install_requires=[
        "falcon>=3.1,<5",
        "psycopg2-binary>=2.9",
        "redis>=4.5",
        "psutil>=5.9",
        "waitress>=2.1",
    ],
    extras_require={
        # The embedded throwaway PostgreSQL of `mnemo-obs serve` without a DSN.
        "demo": ["testing.postgresql>=1.3"],
        "prometheus": ["prometheus_client>=0.17"],
        # mnemo_obs.flask and mnemo_obs.django use the app's own framework;
        # these extras only make sure it is a version they work with.
        "flask": ["flask>=2.2"],
        "django": ["django>=4.2"],
        "test": [
            "pytest>=7",
            "pytest-cov>=4",
            "testing.postgresql>=1.3",
            "hypothesis>=6",
            "flask>=2.2",
            "django>=4.2",
            "gunicorn>=21",
            "prometheus_client>=0.17",
            "opentelemetry-sdk>=1.20",
            "opentelemetry-instrumentation-falcon>=0.41b0",
            # The dashboard's browser tests drive the system's Chromium.
            "playwright>=1.40",
            # The wheel test builds one without build isolation (offline).
            "setuptools",
            "wheel",
        ],
        "bench": [
            "testing.postgresql>=1.3",
            "prometheus_client>=0.17",
            "opentelemetry-sdk>=1.20",
            "opentelemetry-instrumentation-falcon>=0.41b0",
            # Section 'dashboard' loads the page in the system's Chromium.
            "playwright>=1.40",
        ],
    },
    entry_points={"console_scripts": ["mnemo-obs = mnemo_obs.cli:main"]},
    classifiers=[
        "Framework :: Django",
        "Framework :: Falcon",
        "Framework :: Flask",
        "Programming Language :: Python :: 3",
        "Topic :: System :: Monitoring",
        "Typing :: Typed",
    ],
)
